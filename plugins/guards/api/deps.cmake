# libcurl to ask the policy service, cJSON for the request and the verdict.
pkg_check_modules(BH_APIGUARD REQUIRED libcjson libcurl)
target_include_directories(${target} PRIVATE ${BH_APIGUARD_INCLUDE_DIRS})
target_link_libraries(${target} PRIVATE ${BH_APIGUARD_LINK_LIBRARIES})
