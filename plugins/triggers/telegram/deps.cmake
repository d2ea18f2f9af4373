# libcurl for the Bot API, cJSON for updates; a polling thread per trigger.
pkg_check_modules(BH_TELEGRAM REQUIRED libcjson libcurl)
target_include_directories(${target} PRIVATE ${BH_TELEGRAM_INCLUDE_DIRS})
target_link_libraries(${target} PRIVATE ${BH_TELEGRAM_LINK_LIBRARIES} Threads::Threads)
# The state file shared by the trigger plugins (plugins/triggers/common), compiled in.
target_sources(${target} PRIVATE ${CMAKE_SOURCE_DIR}/plugins/triggers/common/state_file.c)
target_include_directories(${target} PRIVATE ${CMAKE_SOURCE_DIR}/plugins/triggers/common)
