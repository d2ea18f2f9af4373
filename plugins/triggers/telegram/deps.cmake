# libcurl for the Bot API, cJSON for updates, OpenSSL for the webhook's secret token; a
# polling thread, or webhook workers, per trigger.
pkg_check_modules(BH_TELEGRAM REQUIRED libcjson libcurl openssl)
target_include_directories(${target} PRIVATE ${BH_TELEGRAM_INCLUDE_DIRS})
target_link_libraries(${target} PRIVATE ${BH_TELEGRAM_LINK_LIBRARIES} Threads::Threads)
# Code shared by the trigger plugins (plugins/triggers/common), compiled in.
set(bht_common ${CMAKE_SOURCE_DIR}/plugins/triggers/common)
target_sources(${target} PRIVATE ${bht_common}/state_file.c ${bht_common}/api_call.c
               ${bht_common}/sig.c ${bht_common}/seen.c ${bht_common}/workq.c)
target_include_directories(${target} PRIVATE ${bht_common})
