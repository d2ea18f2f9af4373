# Writes OUT, a C file holding the CRDs (IN: a ;-list of crds/*.yaml) as NUL-terminated byte
# arrays, for the Kubernetes-compatible API, which serves their field descriptions. Run by the
# build (core/CMakeLists.txt) whenever a CRD changes.
set(arrays "")
set(names "")
set(i 0)
foreach(f ${IN})
  file(READ ${f} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  string(APPEND arrays "static const unsigned char crd${i}[] = {${hex}0};\n")
  string(APPEND names "(const char *)crd${i}, ")
  math(EXPR i "${i} + 1")
endforeach()
file(WRITE ${OUT} "/* Generated from crds/ by scripts/embed-crds.cmake: do not edit. */\n"
     "#include <stddef.h>\n\n${arrays}\n"
     "const char *const bh_kapi_crd_texts[] = {${names}NULL};\n")
