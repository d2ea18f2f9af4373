/* Request authentication schemes of the trigger plugins, compiled into each that pulls it in
 * through its deps.cmake: GitHub-style X-Hub-Signature-256, Standard Webhooks
 * (webhook-id / webhook-timestamp / webhook-signature), Slack's v0 signing secret and a
 * shared token header (Telegram's X-Telegram-Bot-Api-Secret-Token). Pure functions, so the
 * fuzz harness and the unit test call them directly. */
#ifndef BH_TRIGGER_COMMON_SIG_H
#define BH_TRIGGER_COMMON_SIG_H

#include <stddef.h>
#include <stdint.h>

/* Results */
#define SIG_OK 0
#define SIG_MISSING 1 /* a required header is absent */
#define SIG_MALFORMED 2
#define SIG_MISMATCH 3
#define SIG_STALE 4 /* timestamp outside the window */

#define SIG_WINDOW_S 300

/* header: "sha256=<64 hex>". */
int sig_github_verify(const uint8_t *key, size_t key_len, const char *header, const char *body,
                      size_t body_len);
/* secret: "whsec_<base64>" or raw text; id, ts (decimal seconds), header: space-separated
 * "v1,<base64>" entries, any of which may match. now: the current time (seconds). */
int sig_standard_verify(const char *secret, const char *id, const char *ts, const char *header,
                        const char *body, size_t body_len, long long now);
/* Slack: ts is X-Slack-Request-Timestamp (decimal seconds, within the window of now), header
 * is X-Slack-Signature, "v0=<64 hex>", the HMAC-SHA256 of "v0:<ts>:<body>" under secret. */
int sig_slack_verify(const char *secret, const char *ts, const char *header, const char *body,
                     size_t body_len, long long now);
/* A shared secret token sent as a header: given must equal expected (constant time). */
int sig_token_verify(const char *expected, const char *given);
/* A message for a SIG_* result. */
const char *sig_error(int rc);

#endif
