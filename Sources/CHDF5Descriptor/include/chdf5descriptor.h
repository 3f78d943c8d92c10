// An HDF5 file driver over an open file descriptor. libhdf5's own POSIX driver opens files by name and
// resolves /proc/self/fd/N to the file's former name, so it cannot work on an unnamed (O_TMPFILE) file;
// this one reads and writes a descriptor it is given, so outputs stay unnamed until they are committed
// and the .keras extraction never has a name in $TMPDIR.
#ifndef WSURGERY_CHDF5DESCRIPTOR_H
#define WSURGERY_CHDF5DESCRIPTOR_H

#include <hdf5.h>

/// A file-access property list that opens the descriptor `fd` (duplicated; the caller keeps its own),
/// or a negative id. Close it with H5Pclose.
hid_t wsfd_access_list(int fd);

#endif
