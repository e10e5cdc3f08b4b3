/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The PKI's fixed layout (docs/PKI.md): two hierarchies, seven keys.
 * Other tools and tests open these paths directly. */
#include <string.h>

#include "cleanup.h"
#include "pki.h"

/* Issuers come before what they issue: init makes them in this order. */
const struct pki_entity pki_entities[] = {
    {"root-ca", "software-signing", "trustme Software Signing Root CA", NULL, PROFILE_ROOT_CA},
    {"sub-ca", "software-signing", "trustme Software Signing Sub CA", "root-ca", PROFILE_SUB_CA},
    {"signing", "software-signing", "trustme Software Signing", "sub-ca", PROFILE_SIGNING},
    {"general-root-ca", "customer", "trustme General Root CA", NULL, PROFILE_GENERAL_ROOT_CA},
    {"guestos-ca", "customer", "trustme GuestOS Signing CA", "general-root-ca", PROFILE_GUESTOS_CA},
    {"guestos-signing", "customer", "trustme GuestOS Signing", "guestos-ca", PROFILE_SIGNING},
    {"device-ca", "customer", "trustme Device CA", "general-root-ca", PROFILE_DEVICE_CA},
};
const size_t pki_entities_count = ARRAY_SIZE(pki_entities);

const struct pki_entity *pki_entity_find(const char *name)
{
    for (size_t i = 0; i < pki_entities_count; i++)
        if (strcmp(pki_entities[i].name, name) == 0)
            return &pki_entities[i];
    return NULL;
}

bool pki_entity_is_ca(const struct pki_entity *e)
{
    return e->profile == PROFILE_ROOT_CA || e->profile == PROFILE_SUB_CA || e->profile == PROFILE_GUESTOS_CA ||
           e->profile == PROFILE_GENERAL_ROOT_CA || e->profile == PROFILE_DEVICE_CA;
}

const struct pki_entity *pki_ca_find(const char *name)
{
    static const struct {
        const char *alias, *ca;
    } aliases[] = {{"software", "sub-ca"}, {"guestos", "guestos-ca"}, {"device", "device-ca"}};
    for (size_t i = 0; i < ARRAY_SIZE(aliases); i++)
        if (strcmp(name, aliases[i].alias) == 0)
            return pki_entity_find(aliases[i].ca);
    const struct pki_entity *e = pki_entity_find(name);
    return e && pki_entity_is_ca(e) ? e : NULL;
}
