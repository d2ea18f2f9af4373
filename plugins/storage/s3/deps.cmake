# libcurl for HTTP, OpenSSL's libcrypto for SigV4 (HMAC-SHA256), MD5 and SHA-256 checksums.
pkg_check_modules(BH_S3 REQUIRED libcurl libcrypto)
target_include_directories(${target} PRIVATE ${BH_S3_INCLUDE_DIRS})
target_link_libraries(${target} PRIVATE ${BH_S3_LINK_LIBRARIES} Threads::Threads)
