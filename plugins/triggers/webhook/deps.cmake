# OpenSSL for HMAC-SHA256 and base64, cJSON for the payload's text field and the reply.
pkg_check_modules(BH_WEBHOOK REQUIRED libcjson openssl)
target_include_directories(${target} PRIVATE ${BH_WEBHOOK_INCLUDE_DIRS})
target_link_libraries(${target} PRIVATE ${BH_WEBHOOK_LINK_LIBRARIES} Threads::Threads)
# The signature schemes shared by the trigger plugins (plugins/triggers/common), compiled in.
target_sources(${target} PRIVATE ${CMAKE_SOURCE_DIR}/plugins/triggers/common/sig.c
                                 ${CMAKE_SOURCE_DIR}/plugins/triggers/common/seen.c)
target_include_directories(${target} PRIVATE ${CMAKE_SOURCE_DIR}/plugins/triggers/common)
