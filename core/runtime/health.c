/* HTTP health probes, optionally from inside an instance's network namespace. */
#include "health.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mem.h"

struct health_sock {
    int netns_fd; /* borrowed */
    int family, type, protocol;
    int fd;    /* result, -1 on failure */
    int error; /* errno of the failure */
};

/* Runs on a throwaway thread: setns only moves the calling thread, and a socket stays in the
 * namespace it was created in whichever thread later uses it. */
static void *health_sock_thread(void *arg)
{
    struct health_sock *s = arg;
    s->fd = -1;
    if (setns(s->netns_fd, CLONE_NEWNET) < 0) {
        s->error = errno;
        return NULL;
    }
    s->fd = socket(s->family, s->type | SOCK_CLOEXEC, s->protocol);
    s->error = errno;
    return NULL;
}

static curl_socket_t health_opensocket(void *clientp, curlsocktype purpose,
                                       struct curl_sockaddr *addr)
{
    struct health_sock s = {.netns_fd = *(int *)clientp,
                            .family = addr->family,
                            .type = addr->socktype,
                            .protocol = addr->protocol,
                            .fd = -1};
    pthread_t t;
    if (purpose != CURLSOCKTYPE_IPCXN || pthread_create(&t, NULL, health_sock_thread, &s) != 0)
        return CURL_SOCKET_BAD;
    pthread_join(t, NULL);
    errno = s.error;
    return s.fd >= 0 ? s.fd : CURL_SOCKET_BAD;
}

static size_t health_discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    return size * nmemb;
}

static pthread_once_t health_curl_once = PTHREAD_ONCE_INIT;

static void health_curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int health_curl_error(CURL *c, CURLcode rc, const char *url, const char *ebuf,
                             struct bh_err *err)
{
    long os_errno = 0;
    curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &os_errno);
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return bh_err_set(err, BH_ETIMEOUT, "GET %s: timed out", url);
    if (rc == CURLE_COULDNT_CONNECT && os_errno)
        return bh_err_set(err, BH_EUNAVAIL, "GET %s: connect: %s", url, strerror((int)os_errno));
    return bh_err_set(err, BH_EUNAVAIL, "GET %s: %s", url, ebuf[0] ? ebuf : curl_easy_strerror(rc));
}

static int health_get(CURL *c, const char *url, int timeout_ms, struct bh_err *err)
{
    char ebuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, health_discard);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        return health_curl_error(c, rc, url, ebuf, err);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 400)
        return bh_err_set(err, BH_EUNAVAIL, "GET %s: HTTP %ld", url, status);
    return 0;
}

int bh_health_http(const char *netns_path, const char *host, int port, const char *path,
                   int timeout_ms, struct bh_err *err)
{
    pthread_once(&health_curl_once, health_curl_init);
    bh_autoclose int ns = -1;
    if (netns_path && (ns = open(netns_path, O_RDONLY | O_CLOEXEC)) < 0)
        return bh_err_errno(err, BH_EUNAVAIL, "open network namespace %s", netns_path);
    CURL *c = curl_easy_init();
    if (!c)
        return bh_err_set(err, BH_EIO, "curl_easy_init failed");
    if (ns >= 0) {
        curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, health_opensocket);
        curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &ns);
    }
    bh_autofree char *url = bh_xasprintf("http://%s:%d%s%s", host, port,
                                         path && path[0] == '/' ? "" : "/", path ? path : "");
    int rc = health_get(c, url, timeout_ms, err);
    curl_easy_cleanup(c);
    return rc;
}
