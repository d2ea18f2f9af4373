# Shared bridge/veth/lease/nftables code (rtnetlink through libnl-route-3, nftables through
# libnftables), the JSON parser for spec.network, and OpenSSL for the egress engine (egress*.c,
# dns*.c in this directory).
target_sources(${target} PRIVATE ${CMAKE_SOURCE_DIR}/plugins/network/common/bridge.c
               ${CMAKE_SOURCE_DIR}/plugins/network/common/lease.c
               ${CMAKE_SOURCE_DIR}/plugins/network/common/expose.c
               ${CMAKE_SOURCE_DIR}/plugins/network/common/netlink.c
               ${CMAKE_SOURCE_DIR}/plugins/network/common/nft.c)
pkg_check_modules(BH_RESTRICTED REQUIRED libcjson openssl libnl-route-3.0 libnftables)
target_include_directories(${target} PRIVATE ${BH_RESTRICTED_INCLUDE_DIRS})
target_link_libraries(${target} PRIVATE ${BH_RESTRICTED_LINK_LIBRARIES} Threads::Threads ssl crypto)
# Until the egress engine is in the tree the module cannot link (-z defs): compile the wiring
# (so -Werror still checks it) but build no .so; the tests skip the restricted plugin then.
file(GLOB bh_egress_engine ${dir}/egress*.c)
if(NOT bh_egress_engine)
  message(STATUS "network/restricted: no egress engine (egress*.c) yet; .so not built")
  set_target_properties(${target} PROPERTIES EXCLUDE_FROM_ALL TRUE)
  add_library(${target}-wiring OBJECT ${srcs} ${CMAKE_SOURCE_DIR}/plugins/network/common/bridge.c
              ${CMAKE_SOURCE_DIR}/plugins/network/common/lease.c
               ${CMAKE_SOURCE_DIR}/plugins/network/common/expose.c
               ${CMAKE_SOURCE_DIR}/plugins/network/common/netlink.c
               ${CMAKE_SOURCE_DIR}/plugins/network/common/nft.c)
  set_target_properties(${target}-wiring PROPERTIES C_VISIBILITY_PRESET hidden
                        POSITION_INDEPENDENT_CODE ON)
  target_include_directories(${target}-wiring PRIVATE ${CMAKE_SOURCE_DIR}/include
                             ${BH_RESTRICTED_INCLUDE_DIRS})
endif()
