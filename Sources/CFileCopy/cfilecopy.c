#define _GNU_SOURCE
#include "cfilecopy.h"
#include <errno.h>
#include <unistd.h>

ssize_t wsurgery_copy_file_range_at(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len) {
#if defined(__linux__)
    loff_t in = (loff_t)*off_in, out = (loff_t)*off_out;
    ssize_t n = copy_file_range(fd_in, &in, fd_out, &out, len, 0);
    if (n > 0) {
        *off_in = (int64_t)in;
        *off_out = (int64_t)out;
    }
    return n;
#else
    (void)fd_in; (void)off_in; (void)fd_out; (void)off_out; (void)len;
    errno = ENOSYS;
    return -1;
#endif
}
