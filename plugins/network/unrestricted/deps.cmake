# Shared bridge/veth/lease/nftables code (plugins/network/common), compiled into this plugin.
target_sources(${target} PRIVATE ${CMAKE_SOURCE_DIR}/plugins/network/common/bridge.c
               ${CMAKE_SOURCE_DIR}/plugins/network/common/lease.c
               ${CMAKE_SOURCE_DIR}/plugins/network/common/expose.c
               ${CMAKE_SOURCE_DIR}/plugins/network/common/dnsfwd.c)
# The JSON parser for spec.network (expose[].host).
pkg_check_modules(BH_UNRESTRICTED REQUIRED libcjson)
target_include_directories(${target} PRIVATE ${BH_UNRESTRICTED_INCLUDE_DIRS})
target_link_libraries(${target} PRIVATE ${BH_UNRESTRICTED_LINK_LIBRARIES})
