/* GET /ui: the dashboard's built files (ui/ in the source tree, built by esbuild), served from
 * cfg.ui_dir by the daemon itself. The files hold no secrets (the page asks for a token and
 * every API call it makes is authorized as usual), so they need no key.
 *
 * A request path is taken apart segment by segment: a segment that is empty, "." or "..",
 * or starts with a dot, is refused before anything is opened, and the file is then opened
 * with the kernel resolving inside the root (bh_fs_open_in_root), so neither a crafted path
 * nor a symlink under the root can reach a file outside it. Only regular files are served. */
#include "ui.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"
#include "mem.h"

#define UI_PATH_MAX 512
#define UI_FILE_MAX (16 << 20)

/* Extension -> content type; anything else is application/octet-stream. */
static const struct {
    const char *ext;
    const char *type;
} ui_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".map", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".woff2", "font/woff2"},
    {".txt", "text/plain; charset=utf-8"},
};

static const char *ui_content_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < BH_ARRAY_LEN(ui_types); i++)
        if (strcmp(dot, ui_types[i].ext) == 0)
            return ui_types[i].type;
    return "application/octet-stream";
}

int bh_ui_path_ok(const char *rel)
{
    if (!rel || !*rel || strlen(rel) >= UI_PATH_MAX || strchr(rel, '\\'))
        return 0;
    const char *p = rel;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        /* covers "", ".", ".." and hidden files such as .htaccess or a stray .git */
        if (n == 0 || p[0] == '.')
            return 0;
        if (!slash)
            return 1;
        p = slash + 1;
    }
}

static enum MHD_Result ui_queue(struct MHD_Connection *conn, unsigned status,
                                struct MHD_Response *resp, const char *ctype, const char *cache)
{
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "Cache-Control", cache);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    /* Everything the page loads comes from this listener; ws:/wss: for /ws. */
    MHD_add_response_header(
        resp, "Content-Security-Policy",
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'");
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result ui_text(struct MHD_Connection *conn, unsigned status, const char *msg)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(msg), (void *)msg, MHD_RESPMEM_MUST_COPY);
    return ui_queue(conn, status, resp, "text/plain; charset=utf-8", "no-store");
}

/* Hashed bundles (assets/<name>-<hash>.<ext>) never change under one name; the rest (the
 * page itself) is revalidated on every load so a new build shows at once. */
static const char *ui_cache_of(const char *rel)
{
    return strncmp(rel, "assets/", 7) == 0 ? "public, max-age=31536000, immutable" : "no-cache";
}

static enum MHD_Result ui_file(struct MHD_Connection *conn, const char *root, const char *rel)
{
    int fd = bh_fs_open_in_root(root, rel, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return ui_text(conn, MHD_HTTP_NOT_FOUND, "no such file in the dashboard\n");
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > UI_FILE_MAX) {
        close(fd);
        return ui_text(conn, MHD_HTTP_NOT_FOUND, "no such file in the dashboard\n");
    }
    struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
    if (!resp) {
        close(fd);
        return MHD_NO;
    }
    return ui_queue(conn, MHD_HTTP_OK, resp, ui_content_type(rel), ui_cache_of(rel));
}

static enum MHD_Result ui_redirect(struct MHD_Connection *conn)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(resp, "Location", "/ui/");
    return ui_queue(conn, MHD_HTTP_MOVED_PERMANENTLY, resp, "text/plain; charset=utf-8",
                    "no-cache");
}

int bh_ui_wanted(const char *url)
{
    return strncmp(url, "/ui", 3) == 0 && (url[3] == '\0' || url[3] == '/');
}

enum MHD_Result bh_ui_answer(const char *root, struct MHD_Connection *conn, const char *url,
                             const char *method)
{
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return ui_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "the dashboard is read with GET\n");
    if (url[3] == '\0') /* "/ui": the page's relative links need the trailing slash */
        return ui_redirect(conn);
    bh_autofree char *index = root ? bh_xasprintf("%s/index.html", root) : NULL;
    if (!index || !bh_fs_exists(index))
        return ui_text(conn, MHD_HTTP_NOT_FOUND,
                       "the dashboard is not installed: build it with scripts/build.sh (needs "
                       "node and npm) or set BOILERHOUSE_UI_DIR to its built files\n");
    const char *rel = url + 4; /* after "/ui/" */
    if (!*rel)
        rel = "index.html";
    if (!bh_ui_path_ok(rel))
        return ui_text(conn, MHD_HTTP_BAD_REQUEST,
                       "bad dashboard path: segments must be non-empty and not start with '.'\n");
    return ui_file(conn, root, rel);
}
