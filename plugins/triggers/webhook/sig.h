/* Webhook signature schemes: GitHub-style X-Hub-Signature-256 and Standard Webhooks
 * (webhook-id / webhook-timestamp / webhook-signature). Pure functions, so the fuzz
 * harness and the unit test call them directly. */
#ifndef BH_WEBHOOK_SIG_H
#define BH_WEBHOOK_SIG_H

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
/* A message for a SIG_* result. */
const char *sig_error(int rc);

#endif
