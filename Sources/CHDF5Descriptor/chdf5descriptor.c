#define _GNU_SOURCE
#include "chdf5descriptor.h"
#if H5_VERSION_GE(1, 13, 0)
#include <H5FDdevelop.h>  // where 1.13+ keeps H5FD_class_t (untested here: Debian 12 ships 1.10)
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    H5FD_t pub; // must be first
    int fd;
    haddr_t eoa;
    haddr_t eof;
    dev_t device;
    ino_t inode;
    int writable;
} wsfd_file_t;

typedef struct {
    int fd;
} wsfd_fapl_t;

static hid_t driver_id = -1;

static void *fapl_get(H5FD_t *file) {
    wsfd_fapl_t *copy = malloc(sizeof *copy);
    if (copy) copy->fd = ((wsfd_file_t *)file)->fd;
    return copy;
}

static void *fapl_copy(const void *fapl) {
    wsfd_fapl_t *copy = malloc(sizeof *copy);
    if (copy) *copy = *(const wsfd_fapl_t *)fapl;
    return copy;
}

static herr_t fapl_free(void *fapl) {
    free(fapl);
    return 0;
}

static H5FD_t *open_file(const char *name, unsigned flags, hid_t fapl_id, haddr_t maxaddr) {
    (void)name; (void)maxaddr;
    const wsfd_fapl_t *fapl = H5Pget_driver_info(fapl_id);
    if (fapl == NULL) return NULL;
    int fd = dup(fapl->fd);
    if (fd < 0) return NULL;
    struct stat info;
    if (fstat(fd, &info) != 0) {
        close(fd);
        return NULL;
    }
    wsfd_file_t *file = calloc(1, sizeof *file);
    if (file == NULL) {
        close(fd);
        return NULL;
    }
    file->fd = fd;
    file->eof = (haddr_t)info.st_size;
    file->device = info.st_dev;
    file->inode = info.st_ino;
    file->writable = (flags & H5F_ACC_RDWR) != 0;
    return &file->pub;
}

static herr_t close_file(H5FD_t *pub) {
    wsfd_file_t *file = (wsfd_file_t *)pub;
    int status = close(file->fd);
    free(file);
    return status == 0 ? 0 : -1;
}

static int compare(const H5FD_t *a, const H5FD_t *b) {
    const wsfd_file_t *x = (const wsfd_file_t *)a, *y = (const wsfd_file_t *)b;
    if (x->device != y->device) return x->device < y->device ? -1 : 1;
    if (x->inode != y->inode) return x->inode < y->inode ? -1 : 1;
    return 0;
}

static herr_t query(const H5FD_t *file, unsigned long *flags) {
    (void)file;
    *flags = H5FD_FEAT_AGGREGATE_METADATA | H5FD_FEAT_ACCUMULATE_METADATA | H5FD_FEAT_DATA_SIEVE | H5FD_FEAT_AGGREGATE_SMALLDATA;
    return 0;
}

static haddr_t get_eoa(const H5FD_t *pub, H5FD_mem_t type) {
    (void)type;
    return ((const wsfd_file_t *)pub)->eoa;
}

static herr_t set_eoa(H5FD_t *pub, H5FD_mem_t type, haddr_t addr) {
    (void)type;
    wsfd_file_t *file = (wsfd_file_t *)pub;
    // A file being written reserves its space as libhdf5 allocates it: a full disk fails here, as an
    // allocation error libhdf5 reports cleanly, and never later in a metadata write it cannot recover
    // from (libhdf5 1.10 crashes at exit after a failed close).
    if (file->writable && addr > file->eoa && addr > file->eof) {
        int status = posix_fallocate(file->fd, (off_t)file->eof, (off_t)(addr - file->eof));
        if (status == ENOSPC || status == EFBIG || status == EDQUOT) {
            errno = status;  // read by the Swift side to say why
            return -1;
        }
    }
    file->eoa = addr;
    return 0;
}

static haddr_t get_eof(const H5FD_t *pub, H5FD_mem_t type) {
    (void)type;
    return ((const wsfd_file_t *)pub)->eof;
}

static herr_t get_handle(H5FD_t *pub, hid_t fapl, void **handle) {
    (void)fapl;
    *handle = &((wsfd_file_t *)pub)->fd;
    return 0;
}

static herr_t read_file(H5FD_t *pub, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size, void *buffer) {
    (void)type; (void)dxpl;
    wsfd_file_t *file = (wsfd_file_t *)pub;
    if (addr == HADDR_UNDEF || addr + size < addr || addr + size > file->eoa) return -1;
    unsigned char *out = buffer;
    while (size > 0) {
        ssize_t n = pread(file->fd, out, size, (off_t)addr);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (n == 0) {
            // Past the end of the file: zeros, as libhdf5's POSIX driver reads them.
            memset(out, 0, size);
            break;
        }
        out += n;
        addr += (haddr_t)n;
        size -= (size_t)n;
    }
    return 0;
}

static herr_t write_file(H5FD_t *pub, H5FD_mem_t type, hid_t dxpl, haddr_t addr, size_t size, const void *buffer) {
    (void)type; (void)dxpl;
    wsfd_file_t *file = (wsfd_file_t *)pub;
    if (addr == HADDR_UNDEF || addr + size < addr || addr + size > file->eoa) return -1;
    const unsigned char *in = buffer;
    while (size > 0) {
        ssize_t n = pwrite(file->fd, in, size, (off_t)addr);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        in += n;
        addr += (haddr_t)n;
        size -= (size_t)n;
    }
    if (addr > file->eof) file->eof = addr;
    return 0;
}

static herr_t truncate_file(H5FD_t *pub, hid_t dxpl, hbool_t closing) {
    (void)dxpl; (void)closing;
    wsfd_file_t *file = (wsfd_file_t *)pub;
    if (file->eoa == file->eof) return 0;
    if (ftruncate(file->fd, (off_t)file->eoa) != 0) return -1;
    file->eof = file->eoa;
    return 0;
}

static const H5FD_class_t driver_class = {
#if H5_VERSION_GE(1, 13, 0)
    .version = H5FD_CLASS_VERSION,
    .value = (H5FD_class_value_t)601,  // user drivers take values from 256
#endif
    .name = "wsurgery-descriptor",
    .maxaddr = (haddr_t)0x7fffffffffffffffLL,
    .fc_degree = H5F_CLOSE_WEAK,
    .fapl_size = sizeof(wsfd_fapl_t),
    .fapl_get = fapl_get,
    .fapl_copy = fapl_copy,
    .fapl_free = fapl_free,
    .open = open_file,
    .close = close_file,
    .cmp = compare,
    .query = query,
    .get_eoa = get_eoa,
    .set_eoa = set_eoa,
    .get_eof = get_eof,
    .get_handle = get_handle,
    .read = read_file,
    .write = write_file,
    .truncate = truncate_file,
    .fl_map = {H5FD_MEM_DEFAULT, H5FD_MEM_DEFAULT, H5FD_MEM_DEFAULT, H5FD_MEM_DEFAULT, H5FD_MEM_DEFAULT, H5FD_MEM_DEFAULT, H5FD_MEM_DEFAULT},
};

hid_t wsfd_access_list(int fd) {
    if (driver_id < 0 || H5Iis_valid(driver_id) <= 0) {
        driver_id = H5FDregister(&driver_class);
        if (driver_id < 0) return -1;
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    wsfd_fapl_t info = {.fd = fd};
    if (H5Pset_driver(fapl, driver_id, &info) < 0) {
        H5Pclose(fapl);
        return -1;
    }
    return fapl;
}
