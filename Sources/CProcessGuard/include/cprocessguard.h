// What a dying process must still do: remove the temporary files it registered, whatever signal ends
// it, and turn a crash inside a file parser into exit 65 naming the file. Everything the handlers touch
// is preallocated; they call only async-signal-safe functions (unlink, rmdir, write, _exit).
#ifndef WSURGERY_CPROCESSGUARD_H
#define WSURGERY_CPROCESSGUARD_H

/// Installs the handlers (once): terminating signals remove the registered paths and re-raise;
/// SIGSEGV, SIGBUS, SIGABRT and SIGFPE remove them too, then exit 65 with a message when a file was
/// being parsed, else re-raise; SIGILL and SIGTRAP (Swift runtime traps) remove them and re-raise.
/// Signals that are ignored (nohup) stay ignored.
void wsg_install_handlers(void);

/// Registers a path to remove if the process dies; returns a slot, or -1 when the table is full or the
/// path too long. `directory` is non-zero for a directory (removed with rmdir when empty).
int wsg_register(const char *path, int directory);

/// Registers a file to remove if the process dies, only while `path` is still the file `device`,
/// `inode` (registered before it is given that name, so no signal falls between the two).
int wsg_register_identity(const char *path, unsigned long long device, unsigned long long inode);

/// Forgets a slot (the file was committed or removed normally).
void wsg_unregister(int slot);

/// Names the file being parsed by a library that may crash on it (NULL: none).
void wsg_set_parsing(const char *path);

/// Creates an unnamed file in the directory open as `directory` (O_TMPFILE): it vanishes with its last
/// descriptor, however the process ends. Returns the descriptor, or -1 with errno set (EOPNOTSUPP and
/// others when the filesystem cannot).
int wsg_open_unnamed_at(int directory, unsigned mode);

/// Gives the unnamed file `fd` the name `name` in the directory open as `directory` (fails with EEXIST
/// when it exists).
int wsg_link_unnamed_at(int fd, int directory, const char *name);

/// Opens the directory `name` relative to the directory open as `directory` (AT_FDCWD: the working
/// directory); unless `follow`, with O_NOFOLLOW (a symlink fails with ELOOP or ENOTDIR).
int wsg_open_directory_at(int directory, const char *name, int follow);

/// Makes this process receive SIGTERM when its parent dies (a `run --jobs` worker whose `run` was
/// stopped); if the parent `parent` is already gone, raises it at once.
void wsg_die_with_parent(int parent);

#endif
