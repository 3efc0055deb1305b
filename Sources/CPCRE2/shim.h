// The 8-bit code unit API of PCRE2. Its unsuffixed names are function-like macros Swift
// cannot import: Swift calls the `_8` functions (pcre2_compile_8, pcre2_match_8, …).
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
