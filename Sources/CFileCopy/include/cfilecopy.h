#ifndef WSURGERY_CFILECOPY_H
#define WSURGERY_CFILECOPY_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// copy_file_range(2) at explicit input and output offsets, both advanced (Linux); elsewhere -1 with
/// errno = ENOSYS. Swift does not see the glibc declaration because it is behind _GNU_SOURCE.
ssize_t wsurgery_copy_file_range_at(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len);
#endif
