// SwiftPM needs a source file in a C target; the header is the whole module.
#include "CLibFuzzer.h"
