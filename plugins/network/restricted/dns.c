/* The DNS filter: answers A/AAAA for allowlisted names with the real upstream addresses,
 * NXDOMAIN for every other name, REFUSED for an unknown source. Queries are parsed strictly
 * (one question, no compression in it, bounded labels); anything malformed gets FORMERR, and
 * responses are never answered, so nothing here forwards a query anywhere. */
#include "egress_int.h"

#include <ctype.h>
#include <string.h>

enum {
    DNS_NOERROR = 0,
    DNS_FORMERR = 1,
    DNS_NXDOMAIN = 3,
    DNS_NOTIMP = 4,
    DNS_REFUSED = 5,
    DNS_TYPE_A = 1,
    DNS_TYPE_AAAA = 28,
    DNS_CLASS_IN = 1,
    DNS_TTL = 60
};

struct dns_q {
    size_t end; /* offset just past the question */
    char name[EG_NAME_MAX];
    int name_ok; /* the name is a plausible host name */
    unsigned type, cls;
};

static unsigned u16(const unsigned char *p)
{
    return ((unsigned)p[0] << 8) | p[1];
}

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

/* Parses the single question at offset 12: 0 ok, -1 malformed. */
static int parse_question(const unsigned char *q, size_t qlen, struct dns_q *out)
{
    size_t off = 12, tlen = 0;
    out->name_ok = 1;
    for (;;) {
        if (off >= qlen)
            return -1;
        size_t l = q[off++];
        if (l == 0)
            break;
        if (l > 63 || off + l > qlen || tlen + l + 1 > 253 + 1) /* also rejects pointers */
            return -1;
        for (size_t i = 0; i < l; i++) {
            unsigned char c = q[off + i];
            if (!isalnum(c) && c != '-' && c != '_')
                out->name_ok = 0;
            out->name[tlen + i] = (char)tolower(c);
        }
        tlen += l;
        out->name[tlen++] = '.';
        off += l;
    }
    if (tlen == 0) /* the root */
        out->name_ok = 0;
    out->name[tlen ? tlen - 1 : 0] = '\0';
    if (off + 4 > qlen)
        return -1;
    out->type = u16(q + off);
    out->cls = u16(q + off + 2);
    out->end = off + 4;
    return 0;
}

/* Header of the reply: id and RD copied, QR and RA set. */
static size_t reply_header(const unsigned char *q, unsigned char *out, int rcode, unsigned qd)
{
    memset(out, 0, 12);
    out[0] = q[0];
    out[1] = q[1];
    out[2] = (unsigned char)(0x80 | (q[2] & 0x79)); /* QR, opcode, RD */
    out[3] = (unsigned char)(0x80 | (rcode & 0xf)); /* RA */
    put16(out + 4, qd);
    return 12;
}

static size_t reply_answers(struct egress *eg, const struct dns_q *dq, unsigned char *out, size_t n,
                            size_t cap)
{
    int family = dq->type == DNS_TYPE_A ? AF_INET : AF_INET6;
    size_t alen = family == AF_INET ? 4 : 16, count = 0;
    struct eg_addr addrs[16];
    size_t got = eg_resolve(eg, dq->name, family, addrs, 16);
    for (size_t i = 0; i < got && n + 12 + alen <= cap; i++) {
        if (addrs[i].family != family)
            continue;
        put16(out + n, 0xc00c); /* the name in the question */
        put16(out + n + 2, dq->type);
        put16(out + n + 4, DNS_CLASS_IN);
        put16(out + n + 6, 0);
        put16(out + n + 8, DNS_TTL);
        put16(out + n + 10, (unsigned)alen);
        memcpy(out + n + 12, addrs[i].bytes, alen);
        n += 12 + alen;
        count++;
    }
    put16(out + 6, (unsigned)count);
    return n;
}

static int decide(struct egress *eg, const char *src_ip, const struct dns_q *dq)
{
    if (dq->cls != DNS_CLASS_IN)
        return DNS_REFUSED;
    struct eg_policy *p = eg_policy_get(eg, src_ip);
    if (!p)
        return DNS_REFUSED;
    int ok = dq->name_ok && eg_policy_allows(p, dq->name);
    eg_policy_put(p);
    return ok ? DNS_NOERROR : DNS_NXDOMAIN;
}

size_t eg_dns_answer(struct egress *eg, const char *src_ip, const unsigned char *q, size_t qlen,
                     unsigned char *out, size_t cap)
{
    struct dns_q dq;
    if (qlen < 12 || cap < 512 || (q[2] & 0x80)) /* too short, or a response: drop */
        return 0;
    if (((q[2] >> 3) & 0xf) != 0)
        return reply_header(q, out, DNS_NOTIMP, 0);
    if (u16(q + 4) != 1 || u16(q + 6) != 0 || u16(q + 8) != 0 || parse_question(q, qlen, &dq) < 0)
        return reply_header(q, out, DNS_FORMERR, 0);
    if (dq.end > cap - 12)
        return reply_header(q, out, DNS_FORMERR, 0);
    int rcode = decide(eg, src_ip, &dq);
    size_t n = reply_header(q, out, rcode, 1);
    memcpy(out + n, q + 12, dq.end - 12);
    n += dq.end - 12;
    if (rcode == DNS_NOERROR && (dq.type == DNS_TYPE_A || dq.type == DNS_TYPE_AAAA))
        n = reply_answers(eg, &dq, out, n, cap);
    return n;
}
