/* linkemu: the testbed's WAN link, a user-space bridge between two tun devices.
 *
 * The kernel here has no netem (see docs/offload.md, "Testbed"), so delay is made in
 * user space: each direction is a FIFO wire with a rate, a drop-when-full queue, a
 * one-way delay plus jitter, and random loss. Every IP packet between the two network
 * namespaces is read from one tun device, held until its release time, and written to
 * the other.
 *
 *   linkemu NETNS_A TUN_A NETNS_B TUN_B CONFIG STATS
 *
 * NETNS_x is a path (/run/netns/NAME); tun device TUN_x is created inside that
 * namespace. Direction "up" is A -> B, "down" is B -> A. CONFIG holds one line per
 * direction, re-read on SIGHUP:
 *
 *   up   RATE_BPS DELAY_US JITTER_US LOSS_PPM QUEUE_BYTES
 *   down RATE_BPS DELAY_US JITTER_US LOSS_PPM QUEUE_BYTES
 *
 * Jitter is an exponential extra delay with mean JITTER_US; packets keep their order
 * (a packet is never released before the one in front of it). STATS is rewritten once a
 * second: per direction packets and bytes passed, dropped full, dropped lost.
 * It prints "ready" on stdout once both devices exist. SIGTERM ends it; the devices go
 * with it (they are not persistent).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define SLOTS 16384
#define SLOT_BYTES 2048

struct dir {
    const char *name;
    int in, out;                 /* read from in, write to out */
    double rate_bps;             /* 0 = unlimited */
    int64_t delay_ns, jitter_ns; /* one way; mean of the exponential extra */
    uint32_t loss_ppm;
    int64_t queue_bytes;         /* bytes waiting for the wire before a drop */
    int64_t wire_free;           /* when the wire has sent the last accepted packet */
    int64_t last_release;
    unsigned head, tail;         /* ring of held packets */
    int64_t release[SLOTS];
    uint16_t len[SLOTS];
    unsigned char *buf;
    uint64_t pkts, bytes, drop_full, drop_loss;
};

static volatile sig_atomic_t reload = 1, stop = 0;
static void on_hup(int s) { (void)s; reload = 1; }
static void on_term(int s) { (void)s; stop = 1; }

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int open_tun(const char *netns, const char *name) {
    int ns = open(netns, O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET) < 0) {
        fprintf(stderr, "linkemu: cannot enter %s: %s\n", netns, strerror(errno));
        exit(2);
    }
    close(ns);
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "linkemu: /dev/net/tun: %s\n", strerror(errno));
        exit(2);
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        fprintf(stderr, "linkemu: TUNSETIFF %s in %s: %s\n", name, netns, strerror(errno));
        exit(2);
    }
    return fd;
}

static void read_config(const char *path, struct dir *d) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "linkemu: config %s: %s\n", path, strerror(errno));
        return;
    }
    char name[16];
    double rate;
    long long delay, jitter, queue;
    unsigned long loss;
    while (fscanf(f, "%15s %lf %lld %lld %lu %lld", name, &rate, &delay, &jitter, &loss,
                  &queue) == 6) {
        struct dir *x = strcmp(name, "up") == 0 ? &d[0] : strcmp(name, "down") == 0 ? &d[1] : 0;
        if (!x) continue;
        x->rate_bps = rate;
        x->delay_ns = delay * 1000;
        x->jitter_ns = jitter * 1000;
        x->loss_ppm = (uint32_t)loss;
        x->queue_bytes = queue;
    }
    fclose(f);
}

static void write_stats(const char *path, const struct dir *d) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    for (int i = 0; i < 2; i++)
        fprintf(f, "%s %llu %llu %llu %llu %u\n", d[i].name, (unsigned long long)d[i].pkts,
                (unsigned long long)d[i].bytes, (unsigned long long)d[i].drop_full,
                (unsigned long long)d[i].drop_loss, (d[i].tail - d[i].head));
    fclose(f);
    rename(tmp, path);
}

static double uniform(void) { return (random() + 1.0) / 2147483649.0; }

/* Read every waiting packet of direction x and schedule (or drop) it. */
static void take(struct dir *x, int64_t t) {
    for (;;) {
        unsigned char *slot = x->buf + (size_t)(x->tail % SLOTS) * SLOT_BYTES;
        if (x->tail - x->head >= SLOTS) { /* ring full: read and drop */
            unsigned char junk[SLOT_BYTES];
            if (read(x->in, junk, sizeof junk) <= 0) return;
            x->drop_full++;
            continue;
        }
        ssize_t n = read(x->in, slot, SLOT_BYTES);
        if (n <= 0) return;
        if (x->loss_ppm && uniform() * 1e6 < x->loss_ppm) { x->drop_loss++; continue; }
        int64_t start = x->wire_free > t ? x->wire_free : t;
        int64_t ser = x->rate_bps > 0 ? (int64_t)(n * 8e9 / x->rate_bps) : 0;
        double waiting = x->rate_bps > 0 ? (start - t) * x->rate_bps / 8e9 : 0.0;
        if (x->queue_bytes > 0 && waiting + n > x->queue_bytes) { x->drop_full++; continue; }
        x->wire_free = start + ser;
        int64_t rel = x->wire_free + x->delay_ns;
        if (x->jitter_ns > 0) rel += (int64_t)(-log(uniform()) * x->jitter_ns);
        if (rel < x->last_release) rel = x->last_release;
        x->last_release = rel;
        x->release[x->tail % SLOTS] = rel;
        x->len[x->tail % SLOTS] = (uint16_t)n;
        x->tail++;
    }
}

/* Write every packet of direction x that is due; return the next release time or -1. */
static int64_t give(struct dir *x, int64_t t) {
    while (x->head != x->tail) {
        unsigned i = x->head % SLOTS;
        if (x->release[i] > t) return x->release[i];
        if (write(x->out, x->buf + (size_t)i * SLOT_BYTES, x->len[i]) < 0 && errno != EAGAIN)
            x->drop_full++;
        else {
            x->pkts++;
            x->bytes += x->len[i];
        }
        x->head++;
    }
    return -1;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: linkemu NETNS_A TUN_A NETNS_B TUN_B CONFIG STATS\n");
        return 2;
    }
    int a = open_tun(argv[1], argv[2]);
    int b = open_tun(argv[3], argv[4]);
    static struct dir d[2];
    d[0] = (struct dir){.name = "up", .in = a, .out = b};
    d[1] = (struct dir){.name = "down", .in = b, .out = a};
    for (int i = 0; i < 2; i++) {
        d[i].buf = malloc((size_t)SLOTS * SLOT_BYTES);
        if (!d[i].buf) return 3;
    }
    srandom((unsigned)now_ns());
    struct sigaction sa = {0};
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, 0);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, 0);
    sigaction(SIGINT, &sa, 0);
    printf("ready\n");
    fflush(stdout);
    int64_t next_stats = 0;
    struct pollfd pf[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
    while (!stop) {
        int64_t t = now_ns();
        if (reload) {
            reload = 0;
            read_config(argv[5], d);
        }
        if (t >= next_stats) {
            write_stats(argv[6], d);
            next_stats = t + 1000000000LL;
        }
        int64_t next = next_stats;
        for (int i = 0; i < 2; i++) {
            int64_t r = give(&d[i], t);
            if (r >= 0 && r < next) next = r;
        }
        int64_t wait = next - now_ns();
        struct timespec ts = {0, 0};
        if (wait > 0) {
            ts.tv_sec = wait / 1000000000LL;
            ts.tv_nsec = wait % 1000000000LL;
        }
        int r = ppoll(pf, 2, &ts, 0);
        if (r > 0) {
            t = now_ns();
            if (pf[0].revents & POLLIN) take(&d[0], t);
            if (pf[1].revents & POLLIN) take(&d[1], t);
        }
    }
    write_stats(argv[6], d);
    return 0;
}
