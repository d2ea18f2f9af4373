/* Signature headers from the network: GitHub's X-Hub-Signature-256, the Standard Webhooks
 * id/timestamp/signature triple, Slack's X-Slack-Request-Timestamp / X-Slack-Signature and
 * Telegram's secret token header. Input: four NUL-or-newline-separated fields
 * (header or id, timestamp, signature header, body). Parsing must never crash, and a random
 * signature must not verify. */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "../../plugins/triggers/common/sig.h"

static char *fuzz_field(char **p)
{
    char *s = *p;
    char *nl = strchr(s, '\n');
    if (nl) {
        *nl = '\0';
        *p = nl + 1;
    } else {
        *p = s + strlen(s);
    }
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    if (!in)
        abort();
    memcpy(in, data, size);
    in[size] = '\0';
    char *p = in;
    char *a = fuzz_field(&p), *ts = fuzz_field(&p), *sig = fuzz_field(&p), *body = p;
    static const uint8_t key[] = "fuzz-key";
    if (sig_github_verify(key, sizeof(key) - 1, a, body, strlen(body)) == SIG_OK)
        abort();
    if (sig_standard_verify("whsec_ZnV6ei1rZXk=", a, ts, sig, body, strlen(body), 1700000000) ==
        SIG_OK)
        abort();
    sig_standard_verify(a, a, ts, sig, body, strlen(body), 1700000000);
    if (sig_slack_verify("fuzz-key", ts, sig, body, strlen(body), 1700000000) == SIG_OK)
        abort();
    if (sig_token_verify("fuzz-token-0123456789", a) == SIG_OK &&
        strcmp(a, "fuzz-token-0123456789") != 0)
        abort();
    free(in);
    return 0;
}
