# libcurl for the Web API, cJSON for events, OpenSSL for the signing secret's HMAC; the
# events are worked on by a few worker threads per trigger.
pkg_check_modules(BH_SLACK REQUIRED libcjson libcurl openssl)
target_include_directories(${target} PRIVATE ${BH_SLACK_INCLUDE_DIRS})
target_link_libraries(${target} PRIVATE ${BH_SLACK_LINK_LIBRARIES} Threads::Threads)
# Code shared by the trigger plugins (plugins/triggers/common), compiled in.
set(bht_common ${CMAKE_SOURCE_DIR}/plugins/triggers/common)
target_sources(${target} PRIVATE ${bht_common}/api_call.c ${bht_common}/sig.c
               ${bht_common}/seen.c ${bht_common}/workq.c)
target_include_directories(${target} PRIVATE ${bht_common})
