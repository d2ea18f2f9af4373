# OpenSSL for HMAC-SHA256 and base64, cJSON for the payload's text field and the reply.
pkg_check_modules(BH_WEBHOOK REQUIRED libcjson openssl)
target_include_directories(${target} PRIVATE ${BH_WEBHOOK_INCLUDE_DIRS})
target_link_libraries(${target} PRIVATE ${BH_WEBHOOK_LINK_LIBRARIES} Threads::Threads)
