/* unixget SOCKET METHOD PATH TOKEN_FILE [BODY]: one HTTP/1.1 request over a unix socket with
 * the bearer token read from TOKEN_FILE ("-": none); prints the whole response. Linked
 * statically and copied into a test image, so a busybox instance can call the daemon's API
 * through the socket its API dir holds (test_tokens.py). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void read_token(const char *path, char *out, size_t cap)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "r") : NULL;
    out[0] = '\0';
    if (f && fgets(out, (int)cap, f))
        out[strcspn(out, "\r\n")] = '\0';
    if (f)
        fclose(f);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: unixget SOCKET METHOD PATH TOKEN_FILE [BODY]\n");
        return 2;
    }
    char token[256], head[1024];
    const char *body = argc > 5 ? argv[5] : "";
    read_token(argv[4], token, sizeof(token));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[1]);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        perror("connect");
        return 1;
    }
    int n = snprintf(head, sizeof(head),
                     "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n%s%s%s\r\n",
                     argv[2], argv[3], strlen(body), token[0] ? "Authorization: Bearer " : "",
                     token, token[0] ? "\r\n" : "");
    /* The daemon may answer (a 401 or 403) and close before it reads the body: what was
     * not sent then does not matter, the answer does. */
    if (send(fd, head, (size_t)n, MSG_NOSIGNAL) != n ||
        (*body && send(fd, body, strlen(body), MSG_NOSIGNAL) < 0))
        perror("send");
    char buf[4096];
    ssize_t got;
    while ((got = read(fd, buf, sizeof(buf))) > 0)
        fwrite(buf, 1, (size_t)got, stdout);
    close(fd);
    return 0;
}
