# The dashboard (ui/): `npm ci` of the pinned packages (package-lock.json) into the build
# tree, then esbuild (ui/build.mjs) bundles ui/src into ${BH_UI_DIR_DEFAULT}, which the build
# tree's daemon serves at /ui; `cmake --install` copies it to ${BH_INSTALL_UI_DIR}. Without
# node and npm (or with -DBH_UI=OFF) nothing is built: the daemon still builds and runs, and
# /ui answers that the dashboard is not installed. The same node_modules hold playwright-core
# for the browser test (tests/ui/).
option(BH_UI "Build the dashboard (needs node and npm)" ON)
find_program(BH_NODE node)
find_program(BH_NPM npm)
set(BH_UI_NODE_DIR ${CMAKE_BINARY_DIR}/ui-node)
if(BH_UI AND BH_NODE AND BH_NPM)
  file(GLOB_RECURSE bh_ui_srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/ui/src/*)
  add_custom_command(
    OUTPUT ${BH_UI_NODE_DIR}/node_modules/.package-lock.json
    COMMAND ${CMAKE_COMMAND} -E make_directory ${BH_UI_NODE_DIR}
    COMMAND ${CMAKE_COMMAND} -E copy ${CMAKE_SOURCE_DIR}/ui/package.json
            ${CMAKE_SOURCE_DIR}/ui/package-lock.json ${BH_UI_NODE_DIR}
    COMMAND ${BH_NPM} ci --loglevel=error --no-audit --no-fund --prefix ${BH_UI_NODE_DIR}
    DEPENDS ${CMAKE_SOURCE_DIR}/ui/package.json ${CMAKE_SOURCE_DIR}/ui/package-lock.json
    COMMENT "npm ci for the dashboard"
    VERBATIM)
  add_custom_command(
    OUTPUT ${BH_UI_DIR_DEFAULT}/index.html
    COMMAND ${CMAKE_COMMAND} -E env NODE_PATH=${BH_UI_NODE_DIR}/node_modules
            ${BH_NODE} ${CMAKE_SOURCE_DIR}/ui/build.mjs ${BH_UI_NODE_DIR}/node_modules
            ${BH_UI_DIR_DEFAULT}
    DEPENDS ${BH_UI_NODE_DIR}/node_modules/.package-lock.json ${CMAKE_SOURCE_DIR}/ui/build.mjs
            ${bh_ui_srcs}
    COMMENT "Bundling the dashboard into ${BH_UI_DIR_DEFAULT}"
    VERBATIM)
  add_custom_target(ui ALL DEPENDS ${BH_UI_DIR_DEFAULT}/index.html)
  install(DIRECTORY ${BH_UI_DIR_DEFAULT}/ DESTINATION ${BH_INSTALL_UI_DIR})
  set(BH_UI_BUILT ON)
else()
  message(STATUS "Dashboard not built (BH_UI=${BH_UI}, node=${BH_NODE}, npm=${BH_NPM})")
  set(BH_UI_BUILT OFF)
endif()
