/* SPDX-License-Identifier: GPL-2.0-or-later */
/* trustme's verbs: the one table the parser, --help, the man page and the completions are made
 * from (verbs.h). docs/CLI.md describes the same verbs; tests/integration/test_cli.py checks
 * that it names every one. */
#include "verbs.h"

#include "attest_optlist.h"

/* clidoc (the documentation generator) links the table without the handlers. */
#ifdef CLI_DOCGEN
#define H(fn) NULL
#else
#define H(fn) fn
#endif

#define OPT_JSON(what)                                             \
    {                                                              \
        "json", 0, CLI_NONE, NULL, "print " what " as JSON", false \
    }
#define OPT_PIN_FILE(what)                                                                                           \
    {                                                                                                                \
        "pin-file", 0, CLI_FILE, "FILE", what ", one per line in the order the prompts would ask them ('-': stdin)", \
            false                                                                                                    \
    }

static const struct cli_opt create_opts[] = {
    OPT_JSON("the new container"), OPT_PIN_FILE("the first PIN (and PUK) of its token"), {0}};
static const struct cli_opt json_opts[] = {OPT_JSON("the result"), {0}};
static const struct cli_opt start_opts[] = {{"attach", 'a', CLI_NONE, NULL,
                                             "relay init's stdin, stdout and stderr until it exits; exit "
                                             "with its status",
                                             false},
                                            OPT_PIN_FILE("the PIN of the container's token"),
                                            {0}};
static const struct cli_opt stop_opts[] = {{"timeout", 't', CLI_WORD, "S",
                                            "seconds from SIGTERM to SIGKILL (0..3600, default 10; 0: at "
                                            "once)",
                                            false},
                                           {"kill", 'k', CLI_NONE, NULL, "SIGKILL at once", false},
                                           {0}};
static const struct cli_opt run_opts[] = {
    {"tty", 't', CLI_NONE, NULL, "give the command a terminal (the local one is put in raw mode)", false},
    {"env", 'e', CLI_WORD, "KEY=VALUE", "set an environment variable for the command", true},
    {0}};
static const struct cli_opt logs_opts[] = {
    {"previous", 'p', CLI_NONE, NULL, "the log of the run before the current one", false},
    {"raw", 0, CLI_NONE, NULL,
     "the bytes as the container wrote them (by default control "
     "characters and escape sequences are shown as \\uXXXX, \\xNN)",
     false},
    {0}};
static const struct cli_opt pin_file_opts[] = {OPT_PIN_FILE("the secrets"), {0}};
static const struct cli_opt vtpm_reset_opts[] = {
    {"release", 0, CLI_FILE, "FILE",
     "the release statement its mandatory owner signed (trustme-owner release): without it a mandatory owner's "
     "vTPM is not reset",
     false},
    {0}};
static const struct cli_opt wipe_opts[] = {OPT_PIN_FILE("a PKCS#11 token's PIN, to destroy its key object too"), {0}};
static const struct cli_opt iface_assign_opts[] = {{"persistent", 0, CLI_NONE, NULL,
                                                    "also add it to the config's network.interfaces (not for a "
                                                    "signed config)",
                                                    false},
                                                   {0}};
static const struct cli_opt guestos_remove_opts[] = {
    {"version", 0, CLI_WORD, "V", "the version to remove (needed when several are installed)", false}, {0}};
static const struct cli_opt audit_opts[] = {OPT_JSON("the records"),
                                            {"verify", 0, CLI_NONE, NULL,
                                             "check the hash chain and that the log ends at the last record "
                                             "the daemon wrote; exit status 1 if not",
                                             false},
                                            {"file", 0, CLI_FILE, "LOG",
                                             "read a copy of a log instead of asking trustmed (its "
                                             "audit.head is used if it is next to it)",
                                             false},
                                            {0}};
static const struct cli_opt csr_opts[] = {
    {"cn", 0, CLI_WORD, "NAME", "the common name to ask for", false},
    {"out", 0, CLI_FILE, "FILE", "write the bundle to FILE instead of stdout", false},
    {"tls", 0, CLI_NONE, NULL,
     "the TLS client key's bundle instead (after the AK's certificate is installed; trustme-pki issue "
     "--profile tls)",
     false},
    {"vtpm-issuer", 0, CLI_NONE, NULL,
     "the bundle for the vTPM-issuing key instead (after the AK is enrolled; docs/VTPM.md): "
     "trustme-pki issue --ca device --profile vtpm-issuer",
     false},
    {0}};
static const struct cli_opt cert_install_opts[] = {{"chain", 0, CLI_FILE, "CA.pem",
                                                    "a CA certificate of the chain, from the issuer up to, not "
                                                    "including, the root (at most 16)",
                                                    true},
                                                   OPT_JSON("the device information after the install"),
                                                   {0}};
static const struct cli_opt reseal_opts[] = {{"recovery-key-file", 0, CLI_FILE, "FILE",
                                              "the recovery key: 64 hex digits on the first line, "
                                              "as tpmd wrote it ('-': stdin; never on the command line; required)",
                                              false},
                                             {0}};
/* One row of the options of trustme-verify that attest and migrate export have too, from their
 * one definition (ATTEST_OPTIONS). */
#define ATTEST_CLI_OPT(id, name, value, help)                                                     \
    {name,                                                                                        \
     0,                                                                                           \
     !(value)                                                                         ? CLI_NONE  \
     : ATTEST_OPT_##id == ATTEST_OPT_MIN_VERSION || ATTEST_OPT_##id == ATTEST_OPT_PCR ? CLI_WORD  \
                                                                                      : CLI_FILE, \
     value,                                                                                       \
     help,                                                                                        \
     ATTEST_OPTION_REPEATABLE(ATTEST_OPT_##id)},

/* attest: those options (their index here is their enum attest_option). */
static const struct cli_opt attest_opts[] = {ATTEST_OPTIONS(ATTEST_CLI_OPT){0}};

/* migrate export: the verifier's options (their index here is their enum attest_option, as for
 * attest), then its own. */
static const struct cli_opt migrate_export_opts[] = {
    ATTEST_OPTIONS(ATTEST_CLI_OPT){"offer", 0, CLI_FILE, "OFFER",
                                   "the target's offer (`trustme migrate offer` there; required)", false},
    {"nonce", 0, CLI_WORD, "HEX",
     "the nonce this device made (`trustme migrate nonce`) and gave the target, 64 hex digits (required)", false},
    {"out", 0, CLI_FILE, "BUNDLE", "the bundle to write: a new file (required)", false},
    {"expect-ak", 0, CLI_WORD, "NAME",
     "the target's AK name (hex, as `trustme device info` there shows it): an offer of any other device is "
     "refused (without it, any device of the PKI running approved software may answer)",
     false},
    {"pin-file", 0, CLI_FILE, "FILE",
     "the container's PIN, then its PUK, one per line ('-': stdin); the target's token keeps both", false},
    {0}};
/* migrate send: the verifier's options first too, then its own. */
static const struct cli_opt migrate_send_opts[] = {
    ATTEST_OPTIONS(ATTEST_CLI_OPT){"to", 0, CLI_WORD, "HOST:PORT",
                                   "the target's migration endpoint (its device.json migrate.address; required)",
                                   false},
    {"bundle", 0, CLI_FILE, "BUNDLE", "the bundle, written here and kept until the commit (required)", false},
    {"expect-ak", 0, CLI_WORD, "NAME",
     "the target's AK name (hex, as `trustme device info` there shows it): an offer of any other device is "
     "refused (required, or --any-trusted-target)",
     false},
    {"any-trusted-target", 0, CLI_NONE, NULL,
     "instead of --expect-ak: any device of the PKI running approved software may answer (a man in the middle "
     "chooses which)",
     false},
    {"pin-file", 0, CLI_FILE, "FILE",
     "the container's PIN, then its PUK, one per line ('-': stdin); the target's token keeps both", false},
    {"receipt", 0, CLI_FILE, "FILE", "where the target's signed receipt or refusal goes (default BUNDLE.answer)",
     false},
    {"timeout", 0, CLI_WORD, "SECONDS", "how long the target may take to import the bundle (default 600)", false},
    {"resend", 0, CLI_NONE, NULL, "send BUNDLE of an earlier send again (its answer was lost); no new export", false},
    {0}};
#undef ATTEST_CLI_OPT
static const struct cli_opt migrate_offer_opts[] = {
    {"nonce", 0, CLI_WORD, "HEX", "the source's nonce (its `trustme migrate nonce`): 64 hex digits (required)", false},
    {"out", 0, CLI_FILE, "OFFER", "the offer to write (required)", false},
    {"pcr", 0, CLI_WORD, "N", "quote PCR N (the source's reference values' PCRs); repeatable", true},
    {"lifetime", 0, CLI_WORD, "SECONDS",
     "how long the offer may be used (default 86400, at most 2592000): an import after that is refused", false},
    {0}};
static const struct cli_opt migrate_announce_opts[] = {
    {"challenge", 0, CLI_WORD, "HEX", "the target endpoint's challenge: 64 hex digits (required)", false},
    {"size", 0, CLI_WORD, "BYTES", "the bundle's size (required)", false},
    {0}};
static const struct cli_opt migrate_import_opts[] = {
    {"out", 0, CLI_FILE, "RECEIPT", "where the signed receipt (or refusal) goes (required)", false},
    {"receipt-again", 0, CLI_NONE, NULL,
     "import nothing: sign the receipt again of a container installed here from BUNDLE (a lost receipt)", false},
    {0}};
static const struct cli_opt migrate_commit_opts[] = {
    {"receipt", 0, CLI_FILE, "RECEIPT", "the target's signed receipt (required)", false}, {0}};
static const struct cli_opt migrate_abort_opts[] = {
    {"refusal", 0, CLI_FILE, "REFUSAL", "the target's signed refusal (needed unless no export was completed)", false},
    {0}};

const struct cli_opt cli_global_opts[] = {
    {"socket", 0, CLI_FILE, "PATH",
     "the control socket (default $TRUSTME_SOCKET, else "
     "/run/trustme/control.sock)",
     false},
    {"run-dir", 0, CLI_DIR, "DIR", "use DIR/control.sock (the --run-dir given to trustmed)", false},
    {"version", 0, CLI_NONE, NULL, "print the version", false},
    {0}};

#define C1            \
    {                 \
        CLI_CONTAINER \
    }

const struct cli_verb cli_verbs[] = {
    {"create",
     "CONFIG.json",
     "create a container from a config file (docs/CONFIG.md)",
     "A container with a token (the default for a stored data volume) is paired at once when a "
     "terminal or --pin-file can give its first PIN (and PUK); otherwise later with "
     "'trustme change-pin'. CONFIG.json.sig and CONFIG.json.chain.pem beside the config (made "
     "with trustme-pki sign) are sent along.",
     create_opts,
     1,
     1,
     {CLI_FILE},
     false,
     H(cmd_create)},
    {"update",
     "CONTAINER CONFIG.json",
     "replace a stopped container's config",
     "The next start uses it. Name, token, data volume size and user namespace stay. "
     "CONFIG.json.sig and CONFIG.json.chain.pem beside it are sent along (required where the "
     "device wants signed configs).",
     NULL,
     2,
     2,
     {CLI_CONTAINER, CLI_FILE},
     false,
     H(cmd_update)},
    {"list",
     "",
     "list the containers: name, state, pid, UUID, GuestOS, trust, encryption, last exit",
     NULL,
     json_opts,
     0,
     0,
     {0},
     false,
     H(cmd_list)},
    {"state", "CONTAINER", "show a container's state, GuestOS, limits, encryption and last exit", NULL, json_opts, 1, 1,
     C1, false, H(cmd_state)},
    {"config", "CONTAINER", "print a container's config as it was submitted", NULL, NULL, 1, 1, C1, false,
     H(cmd_config)},
    {"start", "CONTAINER", "start a container; waits until init has exec'd",
     "A container with encrypted data needs its PIN: asked on the terminal, or read from "
     "--pin-file or, without a terminal, from stdin. With --attach stdin belongs to the "
     "container: give the PIN on the terminal or in a file.",
     start_opts, 1, 1, C1, false, H(cmd_start)},
    {"stop", "CONTAINER", "stop a container: SIGTERM to init, SIGKILL after the timeout",
     "Waits until the container has stopped.", stop_opts, 1, 1, C1, false, H(cmd_stop)},
    {"freeze", "CONTAINER", "freeze every process of a running container", NULL, NULL, 1, 1, C1, false, H(cmd_freeze)},
    {"unfreeze", "CONTAINER", "thaw a frozen container", NULL, NULL, 1, 1, C1, false, H(cmd_unfreeze)},
    {"run", "CONTAINER [--] COMMAND [ARG...]", "run a command inside a running container",
     "stdin, stdout and stderr are relayed; SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded. "
     "Options come before CONTAINER: what follows it is the command. Exit status: the "
     "command's; 125 if trustme or trustmed failed, 126 if the command cannot be run, 127 if it "
     "was not found.",
     run_opts, 2, CLI_MANY, C1, true, H(cmd_run)},
    {"exec list", "CONTAINER", "the exec sessions (commands started by run) of a container",
     "Session number, pid in the container, start time, attached or orphaned (its client is "
     "gone: the command runs on without stdio), command.",
     json_opts, 1, 1, C1, false, H(cmd_exec_list)},
    {"exec kill", "CONTAINER SESSION [SIGNAL]", "send a signal to an exec session's command",
     "SIGNAL is a name (KILL, SIGKILL) or a number (9 or -9); the default is TERM.", NULL, 2, 3, C1, true,
     H(cmd_exec_kill)},
    {"logs", "CONTAINER", "print init's output when it was started without --attach",
     "The current run's log (the newest 1-2 MiB are kept), escaped like all output unless "
     "--raw.",
     logs_opts, 1, 1, C1, false, H(cmd_logs)},
    {"change-pin", "CONTAINER", "change the PIN of a container's token (the first time: pair it)",
     "The current PIN, then the new one. A container without a PIN yet is paired: its first PIN "
     "(and for a soft token its PUK) is set.",
     pin_file_opts, 1, 1, C1, false, H(cmd_change_pin)},
    {"token unlock", "CONTAINER", "unlock a token locked by wrong PINs, with its PUK",
     "The PUK (a PKCS#11 token: its SO PIN), then a new PIN.", pin_file_opts, 1, 1, C1, false, H(cmd_token_unlock)},
    {"wipe", "CONTAINER", "crypto-erase a stopped container's data",
     "Its token, wrapped key and data image are destroyed; the next start begins empty (after "
     "a new PIN is set with change-pin) (docs/STORAGE.md).",
     wipe_opts, 1, 1, C1, false, H(cmd_wipe)},
    {"remove", "CONTAINER", "wipe a stopped container, then delete it", NULL, NULL, 1, 1, C1, false, H(cmd_remove)},
    {"vtpm info", "CONTAINER", "a container's vTPM: running, its state's digest and its TPM anchor", "docs/VTPM.md",
     json_opts, 1, 1, C1, false, H(cmd_vtpm_info)},
    {"vtpm reset", "CONTAINER", "delete a stopped container's vTPM state and its anchor",
     "Its keys are gone; the next start makes a new vTPM. A mandatory owner's vTPM needs that owner's "
     "--release (docs/VTPM.md).",
     vtpm_reset_opts, 1, 1, C1, false, H(cmd_vtpm_reset)},
    {"vtpm owner",
     "CONTAINER STATEMENT",
     "record the vTPM owner's signed statement (mandatory or discretionary owner)",
     "STATEMENT is what the owner's trustme-owner statement wrote; it must name this container and its "
     "vTPM's EK. A mandatory owner's vTPM is then reset, wiped or removed only with its release "
     "(docs/VTPM.md). From the container's next start the statement is measured (vtpm-owner) into "
     "the device's and the vTPM's PCR.",
     NULL,
     2,
     2,
     {CLI_CONTAINER, CLI_FILE},
     false,
     H(cmd_vtpm_owner)},
    {"iface assign",
     "CONTAINER IFACE",
     "move the host's network interface IFACE into a running container",
     "It is given back at stop, when the container dies, and by the next trustmed "
     "(docs/NETWORK.md).",
     iface_assign_opts,
     2,
     2,
     {CLI_CONTAINER, CLI_WORD},
     false,
     H(cmd_iface_assign)},
    {"iface unassign",
     "CONTAINER IFACE",
     "give an interface assigned to a container back to the "
     "host",
     NULL,
     NULL,
     2,
     2,
     {CLI_CONTAINER, CLI_WORD},
     false,
     H(cmd_iface_unassign)},
    {"guestos install",
     "DIR",
     "verify the GuestOS in DIR and install it (docs/GUESTOS.md)",
     "guestos.json, its signature and chain, the images; trustmed reads DIR itself. Progress "
     "on stderr.",
     json_opts,
     1,
     1,
     {CLI_DIR},
     false,
     H(cmd_guestos_install)},
    {"guestos list",
     "",
     "the installed GuestOSes: name, version, trust level, size, users",
     NULL,
     json_opts,
     0,
     0,
     {0},
     false,
     H(cmd_guestos_list)},
    {"guestos remove",
     "NAME",
     "remove an installed GuestOS (refused while a container uses it)",
     NULL,
     guestos_remove_opts,
     1,
     1,
     {CLI_WORD},
     false,
     H(cmd_guestos_remove)},
    {"ca register",
     "CERT.pem",
     "trust another GuestOS-signing CA",
     "It must be a CA below the device's General root (not the root itself) marked for GuestOS "
     "signing (docs/PKI.md); its subject and SHA-256 are printed.",
     NULL,
     1,
     1,
     {CLI_FILE},
     false,
     H(cmd_ca_register)},
    {"ca unregister",
     "SHA256",
     "stop trusting a CA registered with ca register",
     "SHA256 as register printed it: the GuestOSes signed under it no longer start and show as "
     "revoked.",
     NULL,
     1,
     1,
     {CLI_WORD},
     false,
     H(cmd_ca_unregister)},
    {"audit",
     "",
     "show or verify the hash-chained audit log (docs/AUDIT.md)",
     NULL,
     audit_opts,
     0,
     0,
     {0},
     false,
     H(cmd_audit)},
    {"version",
     "",
     "the CLI's version and protocol, and the daemon's",
     "Asks trustmed (any socket role will do); exit status 1 if it cannot be reached, after the "
     "CLI's own line.",
     json_opts,
     0,
     0,
     {0},
     false,
     H(cmd_version)},
    {"measurements",
     "",
     "the measurement log and the PCR values; exit status 1 if they disagree",
     "What trustmed measured into the TPM, in order (SEQ, PCR, TYPE, NAME, SHA-256 shortened; "
     "--json: full hashes), the current PCR values, and whether the log replays to them "
     "(docs/ATTESTATION.md).",
     json_opts,
     0,
     0,
     {0},
     false,
     H(cmd_measurements)},
    {"attest",
     "",
     "quote this device's TPM and check it here, as trustme-verify does",
     "The quote is over a fresh nonce, through trustmed; the checks, report and exit status are "
     "trustme-verify's: certificate chain (to --ak-anchor, issued by --device-ca), AK binding, "
     "quote signature, nonce, PCR digest, event log, reference values (signed under "
     "--rim-anchor by a certificate of --rim-ca), TPM clock (docs/ATTESTATION.md). "
     "--ak-anchor, --device-ca, --rim-anchor, --rim-ca, --crl and --pcr are repeatable. Exit "
     "status: 0 trusted, 1 a check failed, 2 usage error (or unreadable anchors, CAs, CRLs, "
     "reference files), 3 no quote could be had (trustmed or tpmd).",
     attest_opts,
     0,
     0,
     {0},
     false,
     H(cmd_attest)},
    {"migrate nonce",
     "",
     "as a migration source: a fresh nonce that names this device's AK, for the target's offer",
     "Give it to the target (migrate offer --nonce), then export with it: the offer is good for this device "
     "only (docs/MIGRATION.md \"Source binding\").",
     NULL,
     0,
     0,
     {0},
     false,
     H(cmd_migrate_nonce)},
    {"migrate offer",
     "",
     "as a migration target: a TPM-held migration key, certified and quoted over the source's nonce",
     "Carry OFFER to the source (docs/MIGRATION.md).",
     migrate_offer_opts,
     0,
     0,
     {0},
     false,
     H(cmd_migrate_offer)},
    {"migrate export", "CONTAINER", "verify a target's offer and export a stopped container to it",
     "The offer is checked as trustme attest checks a device (same options), then its migration key; the "
     "container's data key goes into BUNDLE wrapped for that key, and the container is locked here "
     "(docs/MIGRATION.md).",
     migrate_export_opts, 1, 1, C1, false, H(cmd_migrate_export)},
    {"migrate import",
     "BUNDLE",
     "as the target: import a bundle once, answer with a signed receipt",
     "A refusal after the offer was spent is signed too: the source may abort with it.",
     migrate_import_opts,
     1,
     1,
     {CLI_FILE},
     false,
     H(cmd_migrate_import)},
    {"migrate send", "CONTAINER", "migrate a stopped container to a target over its migration endpoint (TCP)",
     "offer, export, import and commit in one: the target's offer for a fresh nonce of this device is checked "
     "as migrate export checks it (same options), the bundle streamed to the target, and its signed receipt "
     "commits here (docs/MIGRATION.md \"Over TCP\").",
     migrate_send_opts, 1, 1, C1, false, H(cmd_migrate_send)},
    {"migrate announce", "CONTAINER",
     "as the source: the AK's signed announcement of the exported bundle, for the target's challenge",
     "Prints the packed MigrateUpload (hex) that the target's migration endpoint takes before the bundle; "
     "`migrate send` does this itself (docs/MIGRATION.md \"The announcement\").",
     migrate_announce_opts, 1, 1, C1, false, H(cmd_migrate_announce)},
    {"migrate commit", "CONTAINER", "on the target's receipt: crypto-erase the container here, sign a tombstone", NULL,
     migrate_commit_opts, 1, 1, C1, false, H(cmd_migrate_commit)},
    {"migrate abort", "CONTAINER", "release a migration lock with the target's signed refusal",
     "Without --refusal only if no export was completed.", migrate_abort_opts, 1, 1, C1, false, H(cmd_migrate_abort)},
    {"device info",
     "",
     "the TPM, the attestation key and its certificate, the storage secret",
     "Also the EK's certificate, the dictionary-attack state and whether containers can get "
     "their keys (docs/ATTESTATION.md).",
     json_opts,
     0,
     0,
     {0},
     false,
     H(cmd_device_info)},
    {"device csr",
     "",
     "the enrollment bundle for the attestation key",
     "A certificate request for the attestation key, signed by it in the TPM, its TPM public "
     "area and the EK's certificate, as PEM. The Device CA issues it, encrypted to the EK: "
     "trustme-pki issue --pki DIR --ca device --csr FILE --ek-anchor MANUFACTURER.pem --out "
     "device.pem.",
     csr_opts,
     0,
     0,
     {0},
     false,
     H(cmd_device_csr)},
    {"device cert install",
     "CERT.pem",
     "install the attestation key's certificate",
     "The certificate issued for `trustme device csr`, encrypted to this TPM's EK (decrypted "
     "through credential activation), and with --chain the CAs up to, not including, the root. "
     "Refused unless it certifies this device's AK. A certificate for this TPM's EK "
     "(trustme-pki ek-cert) is installed the same way.",
     cert_install_opts,
     1,
     1,
     {CLI_FILE},
     false,
     H(cmd_device_cert_install)},
    {"device reseal",
     "",
     "seal the device storage secret to the boot state measured now",
     "After an authorised update of trustmed, scd, tpmd or device.json; authorised by the "
     "recovery key tpmd wrote at its first start.",
     reseal_opts,
     0,
     1 /* to refuse a key given here */,
     {0},
     false,
     H(cmd_device_reseal)},
};
const size_t cli_nverbs = sizeof(cli_verbs) / sizeof(cli_verbs[0]);

const char cli_description[] =
    "trustme talks to trustmed, the trustme daemon, over its control socket. Containers are "
    "named by name or UUID. Output is for people unless --json is given; errors go to stderr as "
    "\"trustme: <what went wrong>\" with a non-zero exit status (2 for a usage error).";

const char cli_notes[] = "PINs and PUKs are asked on the terminal without echo. --pin-file FILE gives them one per "
                         "line in the order asked ('-' is stdin); without a terminal they are read from stdin. "
                         "docs/STORAGE.md explains tokens, PINs, PUKs and the lockout. A config CONFIG.json signed "
                         "by the GuestOS Signing PKI has CONFIG.json.sig and CONFIG.json.chain.pem beside it; create "
                         "and update send them along. Everything printed is escaped: control characters from "
                         "containers are shown as \\uXXXX or \\xNN (docs/CLI.md).";
