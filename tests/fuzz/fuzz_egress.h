/* Shared by the egress harnesses, which include egress.c itself to reach its static parsers:
 * an engine with no listeners, threads or CA, whose hosts table answers every name the
 * policy allows (so nothing falls through to the system resolver). */
#ifndef BH_FUZZ_EGRESS_H
#define BH_FUZZ_EGRESS_H

#define FUZZ_SRC_KNOWN "10.0.0.2"
#define FUZZ_SRC_UNKNOWN "10.0.0.9"

static struct egress *fuzz_egress(void)
{
    static struct egress *eg;
    if (eg)
        return eg;
    eg = eg_xcalloc(1, sizeof(*eg));
    eg->udp_fd = eg->stop_pipe[0] = eg->stop_pipe[1] = -1;
    pthread_rwlock_init(&eg->lock, NULL);
    struct eg_addr v4 = {AF_INET, {127, 0, 0, 1}}, v6 = {AF_INET6, {[15] = 1}};
    hosts_add(eg, &v4, "allowed.test");
    hosts_add(eg, &v6, "allowed.test");
    hosts_add(eg, &v4, "api.cred.test");
    static const char *const allow[] = {"allowed.test"};
    static const struct egress_header hdr = {"Authorization", "Bearer secret"};
    static const struct egress_credential cred = {"api.cred.test", &hdr, 1};
    struct egress_policy p = {"fuzz", allow, 1, &cred, 1};
    struct bh_err err = {0};
    if (egress_set_policy(eg, FUZZ_SRC_KNOWN, &p, &err) < 0)
        abort();
    return eg;
}

#endif
