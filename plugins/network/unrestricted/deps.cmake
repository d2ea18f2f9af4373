# Shared bridge/veth/lease/nftables code (plugins/network/common), compiled into this plugin.
target_sources(${target} PRIVATE ${CMAKE_SOURCE_DIR}/plugins/network/common/bridge.c
               ${CMAKE_SOURCE_DIR}/plugins/network/common/lease.c
               ${CMAKE_SOURCE_DIR}/plugins/network/common/expose.c
               ${CMAKE_SOURCE_DIR}/plugins/network/common/netlink.c
               ${CMAKE_SOURCE_DIR}/plugins/network/common/nft.c
               ${CMAKE_SOURCE_DIR}/plugins/network/common/dnsfwd.c)
# The JSON parser for spec.network (expose[].host); rtnetlink (veths, addresses, routes) and
# nftables in process (common/netlink.c, common/nft.c).
pkg_check_modules(BH_UNRESTRICTED REQUIRED libcjson libnl-route-3.0 libnftables)
target_include_directories(${target} PRIVATE ${BH_UNRESTRICTED_INCLUDE_DIRS})
target_link_libraries(${target} PRIVATE ${BH_UNRESTRICTED_LINK_LIBRARIES} Threads::Threads)
