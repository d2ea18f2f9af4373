# cJSON for the tenants/patterns lists (read as JSON text through host->config_json).
pkg_check_modules(BH_ALLOWLIST REQUIRED libcjson)
target_include_directories(${target} PRIVATE ${BH_ALLOWLIST_INCLUDE_DIRS})
target_link_libraries(${target} PRIVATE ${BH_ALLOWLIST_LINK_LIBRARIES})
