// Thin C shim over libhdf5 for Swift: HDF5 exposes its predefined types, property-list classes and
// version-dependent aliases as macros, which Swift does not import. Each is wrapped here in a static
// inline function so the Swift side stays the same on HDF5 1.10 (Debian 12) and 1.12+.
#ifndef WSURGERY_CHDF5_SHIM_H
#define WSURGERY_CHDF5_SHIM_H

#include <hdf5.h>
#include <stdint.h>
#include <string.h>

/// Initialises the library once and silences its printed error stack (errors become Swift errors).
static inline herr_t wsh5_init(void) {
    herr_t status = H5open();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return status;
}

static inline hid_t wsh5_P_DEFAULT(void) { return H5P_DEFAULT; }
static inline hid_t wsh5_S_ALL(void) { return H5S_ALL; }
static inline unsigned wsh5_F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned wsh5_F_ACC_EXCL(void) { return H5F_ACC_EXCL; }
static inline unsigned wsh5_F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline unsigned wsh5_F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline size_t wsh5_T_VARIABLE(void) { return H5T_VARIABLE; }
static inline haddr_t wsh5_HADDR_UNDEF(void) { return HADDR_UNDEF; }

static inline hid_t wsh5_P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t wsh5_P_GROUP_CREATE(void) { return H5P_GROUP_CREATE; }
static inline hid_t wsh5_P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline hid_t wsh5_P_FILE_CREATE(void) { return H5P_FILE_CREATE; }
static inline hid_t wsh5_P_OBJECT_COPY(void) { return H5P_OBJECT_COPY; }
static inline hid_t wsh5_P_LINK_CREATE(void) { return H5P_LINK_CREATE; }
static inline hid_t wsh5_P_DATASET_XFER(void) { return H5P_DATASET_XFER; }

static inline hid_t wsh5_T_C_S1(void) { return H5T_C_S1; }
static inline hid_t wsh5_T_IEEE_F32LE(void) { return H5T_IEEE_F32LE; }
static inline hid_t wsh5_T_IEEE_F64LE(void) { return H5T_IEEE_F64LE; }
static inline hid_t wsh5_T_STD_I8LE(void) { return H5T_STD_I8LE; }
static inline hid_t wsh5_T_STD_I16LE(void) { return H5T_STD_I16LE; }
static inline hid_t wsh5_T_STD_I32LE(void) { return H5T_STD_I32LE; }
static inline hid_t wsh5_T_STD_I64LE(void) { return H5T_STD_I64LE; }
static inline hid_t wsh5_T_STD_U8LE(void) { return H5T_STD_U8LE; }
static inline hid_t wsh5_T_STD_U16LE(void) { return H5T_STD_U16LE; }
static inline hid_t wsh5_T_STD_U32LE(void) { return H5T_STD_U32LE; }
static inline hid_t wsh5_T_STD_U64LE(void) { return H5T_STD_U64LE; }
static inline hid_t wsh5_T_NATIVE_INT8(void) { return H5T_NATIVE_INT8; }

/// The link type of `name` under `loc` (H5L_TYPE_HARD, _SOFT, _EXTERNAL, ...) or -1 when it cannot be read.
static inline int wsh5_link_type(hid_t loc, const char *name) {
    H5L_info_t info;
    if (H5Lget_info(loc, name, &info, H5P_DEFAULT) < 0) return -1;
    return (int)info.type;
}

/// The object type (H5O_TYPE_GROUP, _DATASET, ...) a hard link points at, or -1.
static inline int wsh5_object_type(hid_t loc, const char *name) {
#if H5_VERSION_GE(1, 12, 0)
    H5O_info2_t info;
    if (H5Oget_info_by_name3(loc, name, &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return -1;
#elif H5_VERSION_GE(1, 10, 3)
    H5O_info_t info;
    if (H5Oget_info_by_name2(loc, name, &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return -1;
#else
    H5O_info_t info;
    if (H5Oget_info_by_name(loc, name, &info, H5P_DEFAULT) < 0) return -1;
#endif
    return (int)info.type;
}

/// A number naming the object a hard link points at (its header address), to notice a group reached
/// twice (a cycle of hard links); 0 when it cannot be read.
static inline uint64_t wsh5_object_address(hid_t loc, const char *name) {
#if H5_VERSION_GE(1, 12, 0)
    H5O_info2_t info;
    if (H5Oget_info_by_name3(loc, name, &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return 0;
    uint64_t address = 0;
    memcpy(&address, &info.token, sizeof address < sizeof info.token ? sizeof address : sizeof info.token);
    return address;
#elif H5_VERSION_GE(1, 10, 3)
    H5O_info_t info;
    if (H5Oget_info_by_name2(loc, name, &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return 0;
    return (uint64_t)info.addr;
#else
    H5O_info_t info;
    if (H5Oget_info_by_name(loc, name, &info, H5P_DEFAULT) < 0) return 0;
    return (uint64_t)info.addr;
#endif
}

/// The number of attributes on an open object, or -1.
static inline long long wsh5_attribute_count(hid_t object) {
#if H5_VERSION_GE(1, 12, 0)
    H5O_info2_t info;
    if (H5Oget_info3(object, &info, H5O_INFO_NUM_ATTRS) < 0) return -1;
#elif H5_VERSION_GE(1, 10, 3)
    H5O_info_t info;
    if (H5Oget_info2(object, &info, H5O_INFO_NUM_ATTRS) < 0) return -1;
#else
    H5O_info_t info;
    if (H5Oget_info(object, &info) < 0) return -1;
#endif
    return (long long)info.num_attrs;
}

/// Frees the strings HDF5 allocated when it read variable-length string data.
static inline herr_t wsh5_reclaim(hid_t type, hid_t space, void *buf) {
#if H5_VERSION_GE(1, 12, 0)
    return H5Treclaim(type, space, H5P_DEFAULT, buf);
#else
    return H5Dvlen_reclaim(type, space, H5P_DEFAULT, buf);
#endif
}

#endif
