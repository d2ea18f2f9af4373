/* GET /ui: the dashboard's static files, served from a directory by the REST listener. */
#ifndef BH_UI_H
#define BH_UI_H

#include <microhttpd.h>

/* Whether url is the dashboard's: "/ui" or under "/ui/". */
int bh_ui_wanted(const char *url);
/* Whether rel (the part after "/ui/") names a file under the root without leaving it: every
 * segment non-empty and not starting with '.', no backslash, bounded length. */
int bh_ui_path_ok(const char *rel);
/* Answers a dashboard request from root (NULL or without index.html: "not installed", 404):
 * "/ui" redirects to "/ui/", "/ui/" is index.html, other paths are files under root with
 * their content type; hashed assets/ are cached for good, the rest revalidated. */
enum MHD_Result bh_ui_answer(const char *root, struct MHD_Connection *conn, const char *url,
                             const char *method);

#endif
