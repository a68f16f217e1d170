/* bench/fleet.sh `saves`: preloaded into the aggregator, every fdatasync and fsync takes
 * SLOW_SYNC_US (default 50,000) µs longer, as on a network volume (a PVC); the calling thread
 * sleeps, the disk does nothing more. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

static void slow(void) {
  const char *s = getenv("SLOW_SYNC_US");
  usleep(s ? (useconds_t)atoi(s) : 50000);
}

int fdatasync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
  slow();
  return real(fd);
}

int fsync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  slow();
  return real(fd);
}
