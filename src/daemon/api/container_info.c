/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What `list` and `state` report about a container: its record, and what the subsystems keep for
 * it (capabilities, token, network, GuestOS). */
#include "container_info.h"

#include "caps.h"
#include "guestos.h"
#include "net.h"
#include "tokens.h"
#include "keystore_svc.h"
#include "migrate.h"
#include "lifecycle.h"

void container_info(const struct container *c, Trustme__ContainerInfo *info, Trustme__Encryption *enc)
{
    trustme__container_info__init(info);
    info->name = (char *)c->cfg->name;
    info->uuid = (char *)c->uuid;
    info->has_state = true;
    info->state = (Trustme__ContainerState)c->state;
    info->has_pid = true;
    info->pid = c->pid;
    info->last_error = (char *)c->last_error;
    info->last_exit = (char *)c->last_exit;
    info->has_uid_base = true;
    info->uid_base = c->uid_base;
    info->rootfs = (char *)c->cfg->rootfs;
    info->has_autostart = true;
    info->autostart = c->cfg->autostart;
    info->has_keystore = info->has_keystore_running = true;
    info->keystore = c->cfg->keystore;
    info->keystore_running = keystore_svc_running(c);
    info->has_migrating = true;
    info->migrating = migrate_locked(c);
    info->has_started_at = true;
    info->started_at = c->started_at;
    info->has_adopted = true;
    info->adopted = container_adopted(c);
    info->has_memory_limit_mb = true;
    info->memory_limit_mb = c->cfg->memory_limit_mb;
    info->has_pids_limit = true;
    info->pids_limit = c->cfg->pids_limit;
    info->cpus = (char *)c->cfg->cpus;
    info->has_data_size_mb = true;
    info->data_size_mb = c->cfg->data_size_mb;
    info->has_user_namespace = true;
    info->user_namespace = c->cfg->user_namespace;
    uint64_t priv = caps_privileged(c->cfg);
    info->has_privileged = true;
    info->privileged = priv != 0;
    caps_names(priv, ((struct container *)c)->privileged_caps, sizeof(c->privileged_caps));
    info->privileged_caps = ((struct container *)c)->privileged_caps;
    tokens_fill_info(c, enc);
    info->encryption = enc;
    info->guestos = (char *)c->cfg->guestos;
    info->config_trust = c->config_signed ? "signed" : "unsigned";
    if (c->net && c->net->leased)
        info->address = (char *)c->net->address_str;
    /* Running: what it runs; stopped: what it would start on now. */
    const struct guestos *g = guestos_for((struct container *)c);
    if (c->state != CS_STOPPED && c->guestos_version)
        g = guestos_find(c->d, c->cfg->guestos, c->guestos_version);
    info->has_guestos_version = true;
    info->guestos_version = g ? g->cfg->version : 0;
    info->trust = g ? (char *)guestos_trust_shown(g) : c->cfg->guestos[0] ? "" : "unsigned";
}
