#define _GNU_SOURCE
#include "cprocessguard.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define SLOTS 256
#define PATH_BYTES 4096

static char paths[SLOTS][PATH_BYTES];
static volatile sig_atomic_t used[SLOTS];
static volatile sig_atomic_t is_directory[SLOTS];
static volatile sig_atomic_t has_identity[SLOTS];
static dev_t identity_device[SLOTS];
static ino_t identity_inode[SLOTS];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static char parsing[PATH_BYTES];
static volatile sig_atomic_t parsing_set;
static char alternate_stack[1 << 16];

static int register_slot(const char *path, int directory, int identity, unsigned long long device, unsigned long long inode) {
    size_t length = strlen(path);
    if (length >= PATH_BYTES) return -1;
    pthread_mutex_lock(&table_lock);
    for (int i = 0; i < SLOTS; i++) {
        if (!used[i]) {
            memcpy(paths[i], path, length + 1);
            is_directory[i] = directory != 0;
            has_identity[i] = identity;
            identity_device[i] = (dev_t)device;
            identity_inode[i] = (ino_t)inode;
            used[i] = 1;
            pthread_mutex_unlock(&table_lock);
            return i;
        }
    }
    pthread_mutex_unlock(&table_lock);
    return -1;
}

int wsg_register(const char *path, int directory) { return register_slot(path, directory, 0, 0, 0); }

int wsg_register_identity(const char *path, unsigned long long device, unsigned long long inode) {
    return register_slot(path, 0, 1, device, inode);
}

void wsg_unregister(int slot) {
    if (slot < 0 || slot >= SLOTS) return;
    pthread_mutex_lock(&table_lock);
    used[slot] = 0;
    pthread_mutex_unlock(&table_lock);
}

void wsg_set_parsing(const char *path) {
    parsing_set = 0;
    if (path == NULL) return;
    size_t length = strlen(path);
    if (length >= PATH_BYTES) length = PATH_BYTES - 1;
    memcpy(parsing, path, length);
    parsing[length] = 0;
    parsing_set = 1;
}

static void remove_registered(void) {
    // Files first, then the directories they were in, the latest registered (the deepest) first.
    for (int i = 0; i < SLOTS; i++) {
        if (!used[i] || is_directory[i]) continue;
        if (has_identity[i]) {
            // Only while it is still the file registered (never one another writer put there).
            struct stat info;
            if (lstat(paths[i], &info) != 0 || info.st_dev != identity_device[i] || info.st_ino != identity_inode[i]) continue;
        }
        unlink(paths[i]);
    }
    for (int i = SLOTS - 1; i >= 0; i--) {
        if (used[i] && is_directory[i]) rmdir(paths[i]);
    }
}

static void say(const char *text) {
    size_t length = strlen(text);
    while (length > 0) {
        ssize_t n = write(2, text, length);
        if (n <= 0) return;
        text += n;
        length -= (size_t)n;
    }
}

static const char *signal_name(int sig) {
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGABRT: return "SIGABRT";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGTRAP: return "SIGTRAP";
    default: return "a signal";
    }
}

static void on_terminate(int sig) {
    remove_registered();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_crash(int sig) {
    remove_registered();
    // SIGSEGV, SIGBUS, SIGABRT and SIGFPE are how libhdf5 dies on a damaged file. A Swift runtime trap
    // (SIGILL on x86-64, SIGTRAP on arm64) is a bug of ours: it stays a signal, so it is seen.
    if (parsing_set && sig != SIGILL && sig != SIGTRAP) {
        say("wsurgery: error: ");
        say(parsing);
        say(": malformed file: the HDF5 library crashed reading it (");
        say(signal_name(sig));
        say("); nothing was written\n");
        _exit(65);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void wsg_install_handlers(void) {
    static int installed = 0;
    if (installed) return;
    installed = 1;
    stack_t stack = {.ss_sp = alternate_stack, .ss_size = sizeof alternate_stack, .ss_flags = 0};
    sigaltstack(&stack, NULL);
    int terminating[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGXFSZ, SIGXCPU, SIGUSR1, SIGUSR2, SIGALRM};
    for (size_t i = 0; i < sizeof terminating / sizeof terminating[0]; i++) {
        struct sigaction old;
        if (sigaction(terminating[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = on_terminate;
        sigemptyset(&action.sa_mask);
        sigaction(terminating[i], &action, NULL);
    }
    int crashing[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGTRAP};
    for (size_t i = 0; i < sizeof crashing / sizeof crashing[0]; i++) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = on_crash;
        action.sa_flags = SA_ONSTACK;
        sigemptyset(&action.sa_mask);
        sigaction(crashing[i], &action, NULL);
    }
}

int wsg_open_unnamed_at(int directory, unsigned mode) {
#if defined(__linux__) && defined(O_TMPFILE)
    return openat(directory, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, (mode_t)mode);
#else
    (void)directory; (void)mode;
    errno = EOPNOTSUPP;
    return -1;
#endif
}

int wsg_link_unnamed_at(int fd, int directory, const char *name) {
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, proc, directory, name, AT_SYMLINK_FOLLOW);
}

int wsg_open_directory_at(int directory, const char *name, int follow) {
    return openat(directory, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW));
}

void wsg_die_with_parent(int parent) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (parent > 0 && getppid() != parent) raise(SIGTERM);
}
