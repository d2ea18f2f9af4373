# cJSON for the payload; a scheduler thread per trigger.
pkg_check_modules(BH_CRON REQUIRED libcjson)
target_include_directories(${target} PRIVATE ${BH_CRON_INCLUDE_DIRS})
target_link_libraries(${target} PRIVATE ${BH_CRON_LINK_LIBRARIES} Threads::Threads)
