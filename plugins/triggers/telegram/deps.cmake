# libcurl for the Bot API, cJSON for updates; a polling thread per trigger.
pkg_check_modules(BH_TELEGRAM REQUIRED libcjson libcurl)
target_include_directories(${target} PRIVATE ${BH_TELEGRAM_INCLUDE_DIRS})
target_link_libraries(${target} PRIVATE ${BH_TELEGRAM_LINK_LIBRARIES} Threads::Threads)
