/* bench/openloop.sh `FLOOR=1`: the least an HTTP/1.1 load generator can cost on this machine,
 * to tell what the machine charges for an open loop from what our code does. One thread, no
 * latency recording, no parsing beyond the first response's length (every later response of
 * nginx's fixed "hello, world" has that length, checked at the end).
 *
 *   floor PORT RATE CONNS SECONDS [TICK_US]
 *
 * RATE 0: closed loop (every connection sends its next request as soon as its answer is in).
 * RATE > 0: open loop with the same design as `scaletest load` (clock.rs): a one-shot timer
 * wakes at the next request's time but no sooner than TICK_US (default 500) µs after the last
 * wake-up, and sends every request due by then, each on an idle connection; with none idle
 * the send waits for the next answer. Only to 127.0.0.1.
 * Prints: sent, answered, wake-ups that left sends waiting for a connection. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static const char REQ[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

static void die(const char *what) {
  perror(what);
  exit(1);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

/* Wake at `at` (CLOCK_MONOTONIC seconds, as now_s). */
static void arm(int tfd, double at) {
  struct itimerspec it = {0};
  it.it_value.tv_sec = (time_t)at;
  it.it_value.tv_nsec = (long)((at - (double)it.it_value.tv_sec) * 1e9);
  if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &it, NULL) < 0) die("timerfd_settime");
}

static int dial(int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

/* One blocking exchange: the length of a whole response (head + Content-Length body). */
static long response_length(int fd) {
  char buf[4096];
  long got = 0;
  if (write(fd, REQ, sizeof REQ - 1) != (ssize_t)(sizeof REQ - 1)) die("write");
  for (;;) {
    ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
    if (n <= 0) die("read");
    got += n;
    buf[got] = 0;
    char *end = strstr(buf, "\r\n\r\n"), *cl = strcasestr(buf, "\r\nContent-Length:");
    if (end && cl) {
      long whole = (end + 4 - buf) + atol(cl + 17);
      if (got == whole) return whole;
      if (got > whole) {
        fprintf(stderr, "floor: more than one response\n");
        exit(1);
      }
    }
  }
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: floor PORT RATE CONNS SECONDS [TICK_US]\n");
    return 2;
  }
  int port = atoi(argv[1]), conns = atoi(argv[3]);
  double rate = atof(argv[2]), secs = atof(argv[4]);
  long tick_us = argc > 5 ? atol(argv[5]) : 500;
  if (port <= 0 || conns <= 0 || secs <= 0 || rate < 0 || tick_us <= 0) {
    fprintf(stderr, "floor: bad arguments\n");
    return 2;
  }
  int *fd = calloc(conns, sizeof *fd), *idle = calloc(conns, sizeof *idle), nidle = 0;
  long *pending = calloc(conns, sizeof *pending), resp = 0;
  int ep = epoll_create1(0);
  for (int i = 0; i < conns; i++) {
    fd[i] = dial(port);
    long len = response_length(fd[i]);
    if (resp && len != resp) {
      fprintf(stderr, "floor: responses of %ld and %ld bytes\n", resp, len);
      return 1;
    }
    resp = len;
    struct epoll_event e = {.events = EPOLLIN, .data.u32 = (unsigned)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd[i], &e) < 0) die("epoll_ctl");
    idle[nidle++] = i;
  }
  long long sent = 0, answered = 0, short_wakes = 0;
  int tfd = -1;
  double start = now_s(), end = start + secs;
  if (rate > 0) {
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    if (tfd < 0) die("timerfd_create");
    arm(tfd, start + 1 / rate);
    struct epoll_event e = {.events = EPOLLIN, .data.u32 = (unsigned)conns};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &e) < 0) die("epoll_ctl");
  } else {
    while (nidle) {
      int i = idle[--nidle];
      if (write(fd[i], REQ, sizeof REQ - 1) != (ssize_t)(sizeof REQ - 1)) die("write");
      sent++;
    }
  }
  long long due_waiting = 0;
  struct epoll_event ev[256];
  char buf[65536];
  for (;;) {
    int n = epoll_wait(ep, ev, 256, 100);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    double t = now_s();
    if (t >= end) break;
    for (int k = 0; k < n; k++) {
      int i = (int)ev[k].data.u32;
      if (i == conns) {
        unsigned long long x;
        (void)!read(tfd, &x, sizeof x);
        long long due = (long long)(rate * (t - start)) - sent - due_waiting;
        if (due > 0) due_waiting += due;
        double next = start + (double)(sent + due_waiting + 1) / rate, soonest = t + tick_us / 1e6;
        arm(tfd, next > soonest ? next : soonest);
        continue;
      }
      ssize_t got = read(fd[i], buf, sizeof buf);
      if (got <= 0) {
        fprintf(stderr, "floor: connection %d closed\n", i);
        return 1;
      }
      pending[i] += got;
      for (; pending[i] >= resp; pending[i] -= resp) answered++;
      if (rate == 0) {
        if (write(fd[i], REQ, sizeof REQ - 1) != (ssize_t)(sizeof REQ - 1)) die("write");
        sent++;
      } else {
        idle[nidle++] = i;
      }
    }
    for (; due_waiting > 0 && nidle; due_waiting--) {
      int i = idle[--nidle];
      if (write(fd[i], REQ, sizeof REQ - 1) != (ssize_t)(sizeof REQ - 1)) die("write");
      sent++;
    }
    if (due_waiting > 0) short_wakes++;
  }
  for (int i = 0; i < conns; i++)
    if (pending[i] % resp) {
      fprintf(stderr, "floor: a response of another length on connection %d\n", i);
      return 1;
    }
  printf("sent %lld answered %lld short %lld (warm-up %d)\n", sent, answered, short_wakes, conns);
  return 0;
}
