# Shared bridge/veth/lease/nftables code (plugins/network/common), compiled into this plugin.
target_sources(${target} PRIVATE ${CMAKE_SOURCE_DIR}/plugins/network/common/bridge.c
               ${CMAKE_SOURCE_DIR}/plugins/network/common/lease.c)
