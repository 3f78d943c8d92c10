// xxHash (Debian libxxhash-dev): XXH3-128, the default input digest of the provenance record.
#include <xxhash.h>
