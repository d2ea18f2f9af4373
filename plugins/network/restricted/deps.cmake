target_link_libraries(${target} PRIVATE ssl crypto pthread)
