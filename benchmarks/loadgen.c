/*
 * loadgen.c - the epoll load client for the triosock benchmarks.
 *
 * Compiled at run time by benchmarks/run.py with `cc -O2` into the results build folder.
 * One process, one thread, non-blocking sockets, level-triggered epoll.  It talks only to the
 * host given with --host (the runner always passes 127.0.0.1).  Every mode is bounded in time:
 * it stops by itself after --warmup + --duration seconds (plus bounded setup and drain time).
 *
 * Output: JSON lines on stdout.  {"event":"start"} when the measured window opens (the runner
 * samples the server's CPU time then), one {"event":"result",...} line when it closes.  The idle
 * modes print {"event":"ready",...}, hold their sockets until stdin reaches EOF (or --hold
 * seconds pass), then print {"event":"done"}.
 *
 * Modes
 *   tcp       N connections ping-ponging --size byte messages: round trips, p50/p99 latency.
 *   stream    N connections streaming --chunk byte chunks, at most --window bytes in flight: MB/s.
 *   udp       N connected UDP sockets ping-ponging --size byte datagrams (lost ones resent).
 *   chat      --conns subscribers and 1 sender in one chat room; the sender writes timestamped
 *             lines, at most --inflight undelivered and at most --rate per second; subscribers
 *             parse "...: bm SEQ T_NS" lines: deliveries/s and p50/p99 delivery latency.
 *             Before the clock starts, the sender announces "bw N" lines until every subscriber
 *             has seen one (at most --setup-timeout seconds from the first connect): a server
 *             that tells everyone about every join has N*N/2 notices to deliver first.
 *             With --linger S, the connections stay open after the result line until stdin
 *             reaches EOF (or S seconds pass), so that the runner can look at the server
 *             (its connections, what it asked Redis) before anyone leaves.
 *   wschat    chat over WebSocket (RFC 6455): each connection does the opening handshake
 *             (GET /ws, no Origin) and waits for 101; the sender sends each line as one masked
 *             text frame, without its newline; each text message from the server holds one or
 *             more lines (separated or ended by "\n"), taken like chat's lines, where the tag
 *             may also follow a quote (a JSON line: ..."text":"bm SEQ T_NS"...).  Pings are
 *             answered with pongs; a subscriber the server closes (close frame or EOF) is
 *             dropped from the count and reported in "closed".
 *   irc       chat over IRC (RFC 1459/2812 lines ending in CRLF): every connection registers
 *             (NICK bmXX_N, USER bm 0 * :bm; XX is the run's own tag, so that no nick of an
 *             earlier run can still be taken), waits for 001, joins #bench and waits for its
 *             own JOIN (or 366, the end of NAMES); the sender (an ordinary member of the
 *             channel) sends "PRIVMSG #bench :bm SEQ T_NS", subscribers take the text after the
 *             first " :" behind the command of every PRIVMSG line (the prefix before the
 *             command starts with ':' too).  Every "PING x" is answered with "PONG x", at any
 *             time, by every connection.  The sender's own lines are not expected back (IRC
 *             servers echo them only with the echo-message capability, never asked for).  An
 *             ERROR line, or an error numeric (400-599 but 422, no MOTD), ends the run with an
 *             error naming it.  The announcements ("bw N") start once all have joined.
 *   http      N keep-alive HTTP/1.1 connections, each sending "GET / HTTP/1.1" and reading the
 *             whole response (status line, headers to the empty line, Content-Length bytes of
 *             body) before the next: requests (round_trips), p50/p99 latency.  A response that
 *             is not 200, has no Content-Length, or a connection closed without a
 *             "Connection: close" response before it, ends the run with an error; after a
 *             "Connection: close" response (a server's per-connection request limit) the
 *             connection is opened again and counted in "reconnects".
 *   idle-tcp  N connections, one echo each, then held open.
 *   idle-udp  N UDP sockets, one echo each, then held open.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- options */

static const char *opt_mode = "tcp";
static const char *opt_host = "127.0.0.1";
static int opt_port = 0;
static int opt_conns = 1;
static double opt_duration = 2.0;
static double opt_warmup = 0.5;
static int opt_size = 64;
static int opt_chunk = 65536;
static long opt_window = 4L * 65536;
static double opt_rate = 20000.0;
static int opt_inflight = 4;
static double opt_hold = 60.0;
static double opt_linger = 0.0;
static double opt_udp_timeout = 0.2;
static double opt_setup_timeout = 20.0;

/* ---------------------------------------------------------------- helpers */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    printf("{\"event\":\"error\",\"error\":\"%s: %s\"}\n", what, strerror(errno));
    fflush(stdout);
    exit(2);
}

static void fail(const char *what) {
    fprintf(stderr, "loadgen: %s\n", what);
    printf("{\"event\":\"error\",\"error\":\"%s\"}\n", what);
    fflush(stdout);
    exit(2);
}

static void set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL, 0);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) die("fcntl");
}

static void set_recv_timeout(int fd, double seconds) {
    struct timeval tv;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

static struct sockaddr_in server_addr;

static int tcp_connect(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* the runner starts us after the server printed its port: a refusal that lasts a second
     * means the server is gone */
    uint64_t deadline = now_ns() + 1000000000ull;
    while (connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr) < 0) {
        if ((errno == ECONNREFUSED || errno == EAGAIN || errno == EINTR) && now_ns() < deadline) {
            close(fd);
            usleep(10000);
            fd = socket(AF_INET, SOCK_STREAM, 0);
            if (fd < 0) die("socket");
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            continue;
        }
        die("connect");
    }
    return fd;
}

static int udp_connect(void) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr) < 0) die("connect udp");
    return fd;
}

/* Blocking write of all bytes, blocking read of exactly n bytes (setup phase only). */
static void blocking_echo(int fd, const char *msg, int n) {
    int off = 0;
    while (off < n) {
        ssize_t w = write(fd, msg + off, (size_t)(n - off));
        if (w < 0) {
            if (errno == EINTR) continue;
            die("setup write");
        }
        off += (int)w;
    }
    char buf[65536];
    int got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf, (size_t)(n - got));
        if (r < 0) {
            if (errno == EINTR) continue;
            die("setup read (echo did not come back)");
        }
        if (r == 0) fail("setup read: server closed the connection");
        got += (int)r;
    }
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int epfd;

static void ep_add(int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = data;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl add");
}

static void ep_mod(int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = data;
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0) die("epoll_ctl mod");
}

static int wait_ms_until(uint64_t t, uint64_t now, int cap) {
    if (t <= now) return 0;
    uint64_t ms = (t - now + 999999) / 1000000;
    return ms > (uint64_t)cap ? cap : (int)ms;
}

/* ---------------------------------------------------------------- latency histogram */
/* Log-linear buckets over 100 ns units: exact below 6.4 us, then 32 sub-buckets per power of
 * two (at most ~3% relative error). */

#define HIST_BUCKETS 2048
static uint64_t hist[HIST_BUCKETS];
static uint64_t hist_count;

static int bucket_of(uint64_t ns) {
    uint64_t v = ns / 100;
    if (v < 64) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - 5;
    int b = 64 + (msb - 6) * 32 + (int)((v >> shift) - 32);
    return b < HIST_BUCKETS ? b : HIST_BUCKETS - 1;
}

static double bucket_mid_us(int b) {
    if (b < 64) return ((double)b + 0.5) / 10.0;
    int msb = (b - 64) / 32 + 6;
    int sub = (b - 64) % 32 + 32;
    int shift = msb - 5;
    double lo = (double)((uint64_t)sub << shift);
    double width = (double)(1ull << shift);
    return (lo + width / 2.0) / 10.0;
}

static void hist_add(uint64_t ns) {
    hist[bucket_of(ns)]++;
    hist_count++;
}

static void hist_reset(void) {
    memset(hist, 0, sizeof hist);
    hist_count = 0;
}

static double hist_pct(double p) {
    if (hist_count == 0) return 0.0;
    uint64_t rank = (uint64_t)(p * (double)hist_count);
    if (rank >= hist_count) rank = hist_count - 1;
    uint64_t acc = 0;
    for (int b = 0; b < HIST_BUCKETS; b++) {
        acc += hist[b];
        if (acc > rank) return bucket_mid_us(b);
    }
    return bucket_mid_us(HIST_BUCKETS - 1);
}

/* ---------------------------------------------------------------- measured window */

static uint64_t t_setup_done, t_start, t_end;
static int measuring;
static double cpu_at_start;

static void open_window(void) {
    measuring = 1;
    hist_reset();
    cpu_at_start = cpu_s();
    printf("{\"event\":\"start\"}\n");
    fflush(stdout);
}

static void print_common(double seconds) {
    printf("\"duration_s\":%.6f,\"client_cpu_pct\":%.1f,\"p50_us\":%.2f,\"p99_us\":%.2f,"
           "\"samples\":%llu",
           seconds, 100.0 * (cpu_s() - cpu_at_start) / seconds, hist_pct(0.50), hist_pct(0.99),
           (unsigned long long)hist_count);
}

/* ---------------------------------------------------------------- tcp ping-pong */

struct pp {
    int fd;
    int got;
    uint64_t t0;
};

static void pp_send(struct pp *c, const char *msg) {
    c->got = 0;
    c->t0 = now_ns();
    ssize_t w = write(c->fd, msg, (size_t)opt_size);
    if (w != opt_size) {
        /* 64-byte writes into an empty socket buffer never split on Linux loopback. */
        if (w < 0) die("write");
        fail("short write in ping-pong");
    }
}

static int run_tcp(void) {
    char msg[65536], buf[65536];
    memset(msg, 'x', sizeof msg);
    msg[opt_size - 1] = '\n';
    struct pp *cs = calloc((size_t)opt_conns, sizeof *cs);
    for (int i = 0; i < opt_conns; i++) {
        cs[i].fd = tcp_connect();
        set_recv_timeout(cs[i].fd, 5.0);
        blocking_echo(cs[i].fd, msg, opt_size);
        set_nonblocking(cs[i].fd);
        ep_add(cs[i].fd, EPOLLIN, (uint64_t)i);
    }
    t_setup_done = now_ns();
    t_start = t_setup_done + (uint64_t)(opt_warmup * 1e9);
    t_end = t_start + (uint64_t)(opt_duration * 1e9);
    for (int i = 0; i < opt_conns; i++) pp_send(&cs[i], msg);
    uint64_t rts = 0;
    struct epoll_event evs[1024];
    for (;;) {
        uint64_t now = now_ns();
        if (!measuring && now >= t_start) {
            open_window();
            rts = 0;
        }
        if (now >= t_end) break;
        int n = epoll_wait(epfd, evs, 1024, wait_ms_until(measuring ? t_end : t_start, now, 50));
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int k = 0; k < n; k++) {
            struct pp *c = &cs[evs[k].data.u64];
            ssize_t r = read(c->fd, buf, sizeof buf);
            if (r < 0) {
                if (errno == EAGAIN || errno == EINTR) continue;
                die("read");
            }
            if (r == 0) fail("server closed a connection");
            c->got += (int)r;
            if (c->got >= opt_size) {
                uint64_t t = now_ns();
                if (measuring) {
                    hist_add(t - c->t0);
                    rts++;
                }
                pp_send(c, msg);
            }
        }
    }
    double secs = (double)(now_ns() - t_start) / 1e9;
    printf("{\"event\":\"result\",\"mode\":\"tcp\",\"conns\":%d,\"size\":%d,\"round_trips\":%llu,"
           "\"rt_per_s\":%.1f,",
           opt_conns, opt_size, (unsigned long long)rts, (double)rts / secs);
    print_common(secs);
    printf("}\n");
    fflush(stdout);
    return 0;
}

/* ---------------------------------------------------------------- tcp streaming */

struct st {
    int fd;
    uint64_t sent, recvd;
    int want_out;
};

static void st_pump(struct st *c, const char *chunk, uint64_t idx) {
    for (;;) {
        uint64_t inflight = c->sent - c->recvd;
        if (inflight >= (uint64_t)opt_window) break;
        uint64_t off = c->sent % (uint64_t)opt_chunk;
        uint64_t len = (uint64_t)opt_chunk - off;
        if (len > (uint64_t)opt_window - inflight) len = (uint64_t)opt_window - inflight;
        ssize_t w = write(c->fd, chunk + off, (size_t)len);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                if (!c->want_out) {
                    c->want_out = 1;
                    ep_mod(c->fd, EPOLLIN | EPOLLOUT, idx);
                }
                return;
            }
            die("write");
        }
        c->sent += (uint64_t)w;
    }
    if (c->want_out) {
        c->want_out = 0;
        ep_mod(c->fd, EPOLLIN, idx);
    }
}

static int run_stream(void) {
    char *chunk = malloc((size_t)opt_chunk);
    static char buf[262144];
    memset(chunk, 'y', (size_t)opt_chunk);
    struct st *cs = calloc((size_t)opt_conns, sizeof *cs);
    for (int i = 0; i < opt_conns; i++) {
        cs[i].fd = tcp_connect();
        set_recv_timeout(cs[i].fd, 5.0);
        blocking_echo(cs[i].fd, chunk, 64);
        set_nonblocking(cs[i].fd);
        ep_add(cs[i].fd, EPOLLIN, (uint64_t)i);
    }
    t_setup_done = now_ns();
    t_start = t_setup_done + (uint64_t)(opt_warmup * 1e9);
    t_end = t_start + (uint64_t)(opt_duration * 1e9);
    for (int i = 0; i < opt_conns; i++) st_pump(&cs[i], chunk, (uint64_t)i);
    uint64_t bytes = 0;
    struct epoll_event evs[1024];
    for (;;) {
        uint64_t now = now_ns();
        if (!measuring && now >= t_start) {
            open_window();
            bytes = 0;
        }
        if (now >= t_end) break;
        int n = epoll_wait(epfd, evs, 1024, wait_ms_until(measuring ? t_end : t_start, now, 50));
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int k = 0; k < n; k++) {
            uint64_t idx = evs[k].data.u64;
            struct st *c = &cs[idx];
            if (evs[k].events & EPOLLIN) {
                ssize_t r = read(c->fd, buf, sizeof buf);
                if (r < 0 && errno != EAGAIN && errno != EINTR) die("read");
                if (r == 0) fail("server closed a connection");
                if (r > 0) {
                    c->recvd += (uint64_t)r;
                    if (measuring) bytes += (uint64_t)r;
                }
            }
            st_pump(c, chunk, idx);
        }
    }
    double secs = (double)(now_ns() - t_start) / 1e9;
    printf("{\"event\":\"result\",\"mode\":\"stream\",\"conns\":%d,\"chunk\":%d,\"bytes\":%llu,"
           "\"mb_per_s\":%.2f,",
           opt_conns, opt_chunk, (unsigned long long)bytes, (double)bytes / secs / 1e6);
    print_common(secs);
    printf("}\n");
    fflush(stdout);
    return 0;
}

/* ---------------------------------------------------------------- udp ping-pong */

struct up {
    int fd;
    uint64_t seq;
    uint64_t t0;
};

static void up_send(struct up *c, char *msg) {
    c->seq++;
    memcpy(msg, &c->seq, sizeof c->seq);
    c->t0 = now_ns();
    if (send(c->fd, msg, (size_t)opt_size, 0) < 0 && errno != EAGAIN && errno != ECONNREFUSED)
        die("send udp");
}

static int run_udp(void) {
    char msg[65536], buf[65536];
    memset(msg, 'u', sizeof msg);
    if (opt_size < 16) opt_size = 16;
    struct up *cs = calloc((size_t)opt_conns, sizeof *cs);
    for (int i = 0; i < opt_conns; i++) {
        cs[i].fd = udp_connect();
        set_recv_timeout(cs[i].fd, 1.0);
        /* one echo first, so the server has seen this peer before the clock starts */
        int ok = 0;
        for (int attempt = 0; attempt < 5 && !ok; attempt++) {
            if (send(cs[i].fd, msg, (size_t)opt_size, 0) < 0) die("send udp");
            ok = recv(cs[i].fd, buf, sizeof buf, 0) > 0;
        }
        if (!ok) fail("udp setup: no echo from the server");
        set_nonblocking(cs[i].fd);
        ep_add(cs[i].fd, EPOLLIN, (uint64_t)i);
    }
    t_setup_done = now_ns();
    t_start = t_setup_done + (uint64_t)(opt_warmup * 1e9);
    t_end = t_start + (uint64_t)(opt_duration * 1e9);
    for (int i = 0; i < opt_conns; i++) up_send(&cs[i], msg);
    uint64_t rts = 0, lost = 0;
    uint64_t timeout_ns = (uint64_t)(opt_udp_timeout * 1e9);
    uint64_t next_scan = now_ns() + 5000000ull;
    struct epoll_event evs[1024];
    for (;;) {
        uint64_t now = now_ns();
        if (!measuring && now >= t_start) {
            open_window();
            rts = lost = 0;
        }
        if (now >= t_end) break;
        if (now >= next_scan) {
            for (int i = 0; i < opt_conns; i++) {
                if (now - cs[i].t0 > timeout_ns) {
                    if (measuring) lost++;
                    up_send(&cs[i], msg);
                }
            }
            next_scan = now + 5000000ull;
        }
        int n = epoll_wait(epfd, evs, 1024, wait_ms_until(next_scan, now, 5));
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int k = 0; k < n; k++) {
            struct up *c = &cs[evs[k].data.u64];
            for (;;) {
                ssize_t r = recv(c->fd, buf, sizeof buf, 0);
                if (r < 0) {
                    if (errno == EAGAIN || errno == EINTR || errno == ECONNREFUSED) break;
                    die("recv udp");
                }
                uint64_t seq;
                if (r < (ssize_t)sizeof seq) continue;
                memcpy(&seq, buf, sizeof seq);
                if (seq != c->seq) continue; /* a late answer to a datagram already resent */
                if (measuring) {
                    hist_add(now_ns() - c->t0);
                    rts++;
                }
                up_send(c, msg);
            }
        }
    }
    double secs = (double)(now_ns() - t_start) / 1e9;
    printf("{\"event\":\"result\",\"mode\":\"udp\",\"conns\":%d,\"size\":%d,\"round_trips\":%llu,"
           "\"rt_per_s\":%.1f,\"lost\":%llu,",
           opt_conns, opt_size, (unsigned long long)rts, (double)rts / secs,
           (unsigned long long)lost);
    print_common(secs);
    printf("}\n");
    fflush(stdout);
    return 0;
}

/* ---------------------------------------------------------------- chat fan-out */
/* The same room over TCP lines (chat) or over WebSocket (wschat).  In wschat every connection
 * first does the client's opening handshake (GET /ws, a fixed key, no Origin), then speaks
 * RFC 6455: the client's frames are masked, the server's are not.  The sender sends each line
 * as one text frame (the TCP line without its "\n"); a text message from the server holds one
 * or more lines, separated or ended by "\n", each taken like a TCP line.  Pings are answered
 * with pongs; a close (or EOF) ends that connection, and the run goes on without it. */

#define LINEBUF 8192
#define RING 65536

struct sub {
    int fd;
    int len;
    int ready;     /* has seen an announcement */
    int caught_up; /* has seen the final announcement: nothing older is queued for it */
    /* wschat only */
    int sender;     /* this is the sender's connection: its text is not counted */
    int open;       /* the opening handshake is done (buf holds lines, not the head) */
    int closed;     /* the server closed it: out of the epoll set */
    int skip;       /* dropping the rest of an overlong line */
    int in_payload; /* reading the current frame's payload, not its header */
    int in_msg;     /* inside a data message (fragments until FIN) */
    int msg_text;   /* that message is text */
    int opcode, fin, hdr_len, ctl_len;
    /* irc only (open: has joined #bench) */
    int registered; /* 001 arrived */
    char nick[24];
    uint64_t left; /* payload bytes of the current frame still to come */
    uint8_t hdr[14];
    uint8_t ctl[128];
    char buf[LINEBUF];
};

struct slot {
    uint64_t t;
    uint32_t count;
};

static struct slot ring[RING];
static uint64_t next_seq, oldest_seq, deliveries, late, chat_lost;
static int subs_ready, subs_caught_up;
static int subs_closed, ready_closed, caught_closed; /* wschat: closed by the server */
static int64_t bw_final = -1;
static int ws_mode;
static int irc_mode;
static int irc_registered, irc_joined; /* irc: connections past 001, and in #bench */
static unsigned irc_tag;               /* irc: this run's tag in every nick */

static char out[65536];
static int out_len;
static int sender_fd, sender_want_out;

static void sender_flush(void) {
    while (out_len > 0) {
        ssize_t w = send(sender_fd, out, (size_t)out_len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            die("sender write");
        }
        memmove(out, out + w, (size_t)(out_len - w));
        out_len -= (int)w;
    }
    int want = out_len > 0;
    if (want != sender_want_out) {
        sender_want_out = want;
        ep_mod(sender_fd, want ? (EPOLLIN | EPOLLOUT) : EPOLLIN, (uint64_t)opt_conns);
    }
}

static void sender_queue(const char *data, int n) {
    if (out_len + n > (int)sizeof out) return; /* the server is not reading: drop this line */
    memcpy(out + out_len, data, (size_t)n);
    out_len += n;
}

/* ---- WebSocket framing (client side) */

static const char ws_key[] = "dGhlIHNhbXBsZSBub25jZQ=="; /* RFC 6455's sample key ... */
static const char ws_accept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; /* ... and its accept value */
static const uint8_t ws_mask[4] = {0x5b, 0xc2, 0x17, 0xe9};

/* A masked client frame of n <= 65535 payload bytes into dst (n + 8 bytes at most). */
static int ws_frame(char *dst, int opcode, const char *payload, int n) {
    int h = 0;
    dst[h++] = (char)(0x80 | opcode); /* FIN */
    if (n < 126) {
        dst[h++] = (char)(0x80 | n);
    } else {
        dst[h++] = (char)(0x80 | 126);
        dst[h++] = (char)((n >> 8) & 0xff);
        dst[h++] = (char)(n & 0xff);
    }
    memcpy(dst + h, ws_mask, 4);
    h += 4;
    for (int i = 0; i < n; i++) dst[h + i] = (char)(payload[i] ^ (char)ws_mask[i & 3]);
    return h + n;
}

static void ws_handshake_request(int fd) {
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     opt_host, opt_port, ws_key);
    /* a blocking write of a few hundred bytes into a fresh socket */
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) die("websocket handshake write");
}

/* One chat line for the sender: a TCP line ends in "\n", a WebSocket one is a text frame. */
static void sender_line(const char *text, int n) {
    if (irc_mode) {
        char line[160];
        int len = snprintf(line, sizeof line, "PRIVMSG #bench :%.*s\r\n", n, text);
        sender_queue(line, len);
    } else if (ws_mode) {
        char frame[128];
        sender_queue(frame, ws_frame(frame, 0x1, text, n));
    } else {
        char line[128];
        memcpy(line, text, (size_t)n);
        line[n] = '\n';
        sender_queue(line, n + 1);
    }
}

/* Where "bm " or "bw " (tag) starts in a line: after ": " (a TCP line, "guestN: bm ...") or,
 * over WebSocket, also after a quote (a JSON line, ..."text":"bm ..."). */
static char *find_tag(char *line, int n, const char *tag) {
    char pat[8];
    snprintf(pat, sizeof pat, ": %s ", tag);
    char *p = memmem(line, (size_t)n, pat, 5);
    if (p) return p + 5;
    if (!ws_mode) return NULL;
    snprintf(pat, sizeof pat, "\"%s ", tag);
    p = memmem(line, (size_t)n, pat, 4);
    return p ? p + 4 : NULL;
}

/* An announcement ("bw N", p at N) reached a subscriber. */
static void saw_announcement(struct sub *s, const char *p) {
    int64_t seen = (int64_t)strtoll(p, NULL, 10);
    if (!s->ready) {
        s->ready = 1;
        subs_ready++;
    }
    if (bw_final >= 0 && !s->caught_up && seen >= bw_final) {
        s->caught_up = 1;
        subs_caught_up++;
    }
}

/* A measured line ("bm SEQ T_NS", p at SEQ) reached a subscriber: count it. */
static void saw_message(const char *p, uint64_t now) {
    char *end;
    uint64_t seq = strtoull(p, &end, 10);
    uint64_t t = strtoull(end, NULL, 10);
    int counted = measuring && now < t_end;
    if (seq >= oldest_seq && seq < next_seq)
        ring[seq % RING].count++;
    else if (counted)
        late++;
    if (!counted) return;
    deliveries++;
    if (t && now > t) hist_add(now - t);
}

/* One complete line arrived at a subscriber. */
static void chat_line(struct sub *s, char *line, int n, uint64_t now) {
    line[n] = '\0';
    char *p = find_tag(line, n, "bw");
    if (p) {
        saw_announcement(s, p);
        return;
    }
    p = find_tag(line, n, "bm");
    if (!p) return; /* greetings, notices, joins */
    saw_message(p, now);
}

/* ---- irc: a connection's lines */

/* End the run with an error quoting a line from the server (made safe for a JSON string). */
static void irc_fail(const char *what, const struct sub *s, const char *line) {
    char msg[256];
    int n = snprintf(msg, sizeof msg, "irc: %s (%s %s): ", what, s->sender ? "sender" : "subscriber",
                     s->nick);
    for (const char *c = line; *c && n < (int)sizeof msg - 1; c++)
        msg[n++] = (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) ? '\'' : *c;
    msg[n] = '\0';
    fail(msg);
}

/* A line from this connection to the server; CRLF is added. */
static void irc_send(struct sub *s, const char *text) {
    char line[600];
    int n = snprintf(line, sizeof line, "%s\r\n", text);
    if (n >= (int)sizeof line) fail("irc: a line too long to send");
    if (s->sender) { /* behind what is queued, never inside a line */
        sender_queue(line, n);
        sender_flush();
    } else if (send(s->fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
        /* a subscriber sends next to nothing: its socket buffer is empty */
        die("irc: subscriber write");
    }
}

/* One complete line (its "\n" cut off) arrived on an IRC connection: [":prefix "] COMMAND
 * [params] [" :" trailing]. */
static void irc_line(struct sub *s, char *line, int n, uint64_t now) {
    if (n > 0 && line[n - 1] == '\r') n--;
    line[n] = '\0';
    char *prefix = NULL, *p = line;
    if (*p == ':') { /* the source: ":nick!user@host " or ":server " */
        prefix = p + 1;
        p = strchr(p, ' ');
        if (!p) return;
        *p++ = '\0';
        while (*p == ' ') p++;
    }
    char *args = strchr(p, ' ');
    if (args) *args++ = '\0';
    else args = p + strlen(p);
    if (!strcmp(p, "PRIVMSG")) {
        if (s->sender) return; /* only with echo-message, which nobody asked for */
        char *text = strstr(args, " :"); /* the trailing parameter: after the target */
        if (!text) return;
        text += 2;
        if (!strncmp(text, "bm ", 3)) saw_message(text + 3, now);
        else if (!strncmp(text, "bw ", 3)) saw_announcement(s, text + 3);
        return;
    }
    if (!strcmp(p, "PING")) {
        char pong[520];
        snprintf(pong, sizeof pong, "PONG %s", args);
        irc_send(s, pong);
        return;
    }
    if (!strcmp(p, "001")) {
        if (!s->registered) {
            s->registered = 1;
            irc_registered++;
            irc_send(s, "JOIN #bench");
        }
        return;
    }
    if (!strcmp(p, "366") || !strcmp(p, "JOIN")) {
        if (!s->open && p[0] == '3') {
            s->open = 1; /* the end of NAMES comes after the JOIN itself */
            irc_joined++;
        } else if (!s->open && prefix) { /* a JOIN: is it our own? */
            size_t len = strcspn(prefix, "!@");
            if (len == strlen(s->nick) && !strncasecmp(prefix, s->nick, len)) {
                s->open = 1;
                irc_joined++;
            }
        }
        return;
    }
    if (!strcmp(p, "ERROR")) irc_fail("the server sent ERROR", s, args); /* args: its reason */
    if (p[0] >= '4' && p[0] <= '5' && strlen(p) == 3 && p[1] >= '0' && p[1] <= '9' &&
        p[2] >= '0' && p[2] <= '9' && strcmp(p, "422") != 0) { /* 422: no MOTD, harmless */
        char what[32];
        snprintf(what, sizeof what, "error numeric %s", p);
        irc_fail(what, s, args);
    }
}

static void sub_read(struct sub *s, uint64_t now) {
    ssize_t r = read(s->fd, s->buf + s->len, (size_t)(LINEBUF - 1 - s->len));
    if (r < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        die("subscriber read");
    }
    if (r == 0 && irc_mode) irc_fail("the server closed the connection", s, "no ERROR line");
    if (r == 0)
        fail(s->sender ? "server closed the sender connection"
                       : "server closed a subscriber connection");
    s->len += (int)r;
    int start = 0;
    for (int i = s->len - (int)r; i < s->len; i++) {
        if (s->buf[i] == '\n') {
            if (irc_mode) irc_line(s, s->buf + start, i - start, now);
            else chat_line(s, s->buf + start, i - start, now);
            start = i + 1;
        }
    }
    if (start > 0) {
        memmove(s->buf, s->buf + start, (size_t)(s->len - start));
        s->len -= start;
    } else if (s->len >= LINEBUF - 1) {
        s->len = 0; /* an overlong line: drop it */
    }
}

/* ---- wschat: a connection's bytes through the frame parser */

static void ws_gone(struct sub *s, const char *why) {
    if (s->sender) {
        char what[96];
        snprintf(what, sizeof what, "server closed the sender connection (%s)", why);
        fail(what);
    }
    close(s->fd); /* also takes it out of the epoll set */
    s->closed = 1;
    subs_closed++;
    ready_closed += s->ready;
    caught_closed += s->caught_up;
}

/* Text payload bytes of a message: lines end at "\n" (and at the end of the message). */
static void ws_text(struct sub *s, const char *p, size_t n, uint64_t now) {
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        if (!s->skip) {
            if (s->len + take > (size_t)(LINEBUF - 1)) {
                s->skip = 1; /* an overlong line: drop it */
                s->len = 0;
            } else {
                memcpy(s->buf + s->len, p, take);
                s->len += (int)take;
            }
        }
        if (!nl) return;
        if (!s->skip) chat_line(s, s->buf, s->len, now);
        s->len = 0;
        s->skip = 0;
        p = nl + 1;
        n -= take + 1;
    }
}

static void ws_send_control(struct sub *s, int opcode, const uint8_t *payload, int n) {
    char frame[160];
    int len = ws_frame(frame, opcode, (const char *)payload, n);
    if (s->sender) {
        sender_queue(frame, len); /* after the frames already queued, never inside one */
        sender_flush();
    } else {
        /* a subscriber sends nothing else: its socket buffer is empty */
        (void)send(s->fd, frame, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
}

static void ws_control(struct sub *s) {
    if (s->opcode == 0x9) { /* ping: pong with the same payload */
        ws_send_control(s, 0xA, s->ctl, s->ctl_len);
    } else if (s->opcode == 0x8) { /* close: answer with its status code, then stop */
        ws_send_control(s, 0x8, s->ctl, s->ctl_len >= 2 ? 2 : 0);
        ws_gone(s, "close frame");
    } else if (s->opcode != 0xA) {
        fail("wschat: a frame with an unknown control opcode");
    }
}

static void ws_feed(struct sub *s, const char *p, size_t n, uint64_t now) {
    while (!s->closed && (n > 0 || (s->in_payload && s->left == 0))) {
        if (!s->in_payload) {
            s->hdr[s->hdr_len++] = (uint8_t)*p++;
            n--;
            if (s->hdr_len < 2) continue;
            uint8_t b0 = s->hdr[0], b1 = s->hdr[1], l7 = b1 & 0x7f;
            if (b1 & 0x80) fail("wschat: the server sent a masked frame");
            if (b0 & 0x70) fail("wschat: a frame with RSV bits (no extension was agreed)");
            int need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
            if (s->hdr_len < need) continue;
            uint64_t len = l7;
            if (l7 >= 126) {
                len = 0;
                for (int i = 2; i < need; i++) len = (len << 8) | s->hdr[i];
            }
            s->hdr_len = 0;
            s->in_payload = 1;
            s->left = len;
            s->fin = (b0 & 0x80) != 0;
            s->opcode = b0 & 0x0f;
            if (s->opcode >= 0x8) {
                if (len > 125 || !s->fin) fail("wschat: a control frame too long or fragmented");
                s->ctl_len = 0;
            } else if (s->opcode == 0x0) {
                if (!s->in_msg) fail("wschat: a continuation frame outside a message");
            } else if (s->opcode == 0x1 || s->opcode == 0x2) {
                if (s->in_msg) fail("wschat: a new message inside a fragmented one");
                s->in_msg = 1;
                s->msg_text = s->opcode == 0x1;
            } else {
                fail("wschat: a frame with an unknown data opcode");
            }
            continue;
        }
        size_t take = n < s->left ? n : (size_t)s->left;
        if (s->opcode >= 0x8) {
            memcpy(s->ctl + s->ctl_len, p, take);
            s->ctl_len += (int)take;
        } else if (s->msg_text && !s->sender) {
            ws_text(s, p, take, now);
        }
        p += take;
        n -= take;
        s->left -= take;
        if (s->left > 0) return; /* n is 0: the rest of the frame comes later */
        s->in_payload = 0;
        if (s->opcode >= 0x8) {
            ws_control(s);
        } else if (s->fin) { /* the end of a message ends its last line too */
            if (s->msg_text && !s->sender && s->len > 0 && !s->skip)
                chat_line(s, s->buf, s->len, now);
            s->len = 0;
            s->skip = 0;
            s->in_msg = 0;
        }
    }
}

/* The server's answer to the opening handshake: "HTTP/1.1 101", our accept value. */
static void ws_head(struct sub *s, int n) {
    s->buf[n] = '\0';
    if (strncmp(s->buf, "HTTP/1.1 101", 12) != 0) {
        char what[128];
        char *eol = strstr(s->buf, "\r\n");
        if (eol) *eol = '\0';
        snprintf(what, sizeof what, "wschat: the handshake got \"%.80s\", not 101", s->buf);
        fail(what);
    }
    if (!memmem(s->buf, (size_t)n, ws_accept, sizeof ws_accept - 1))
        fail("wschat: a 101 without the right Sec-WebSocket-Accept");
}

static void ws_read(struct sub *s, uint64_t now) {
    static char rbuf[65536];
    if (s->closed) return;
    if (!s->open) { /* the handshake's response head goes into buf */
        ssize_t r = read(s->fd, s->buf + s->len, (size_t)(LINEBUF - 1 - s->len));
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            die("websocket handshake read");
        }
        if (r == 0) fail("wschat: the server closed a connection during the handshake");
        s->len += (int)r;
        char *e = memmem(s->buf, (size_t)s->len, "\r\n\r\n", 4);
        if (!e) {
            if (s->len >= LINEBUF - 1) fail("wschat: a handshake response longer than 8 KiB");
            return;
        }
        int head = (int)(e + 4 - s->buf);
        int rest = s->len - head;
        memcpy(rbuf, s->buf + head, (size_t)rest); /* frames right behind the head */
        ws_head(s, head);
        s->open = 1;
        s->len = 0;
        ws_feed(s, rbuf, (size_t)rest, now);
        return;
    }
    ssize_t r = read(s->fd, rbuf, sizeof rbuf);
    if (r < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        if (errno == ECONNRESET) {
            ws_gone(s, "connection reset");
            return;
        }
        die("subscriber read");
    }
    if (r == 0) {
        ws_gone(s, "EOF without a close frame");
        return;
    }
    ws_feed(s, rbuf, (size_t)r, now);
}

/* ---- the run */

static struct sub *subs;

/* Keep every socket open (nothing more is read or sent) until stdin reaches EOF or
 * `seconds` pass. */
static void linger_until_stdin_eof(double seconds) {
    uint64_t deadline = now_ns() + (uint64_t)(seconds * 1e9);
    char junk[4096];
    for (;;) {
        uint64_t now = now_ns();
        if (now >= deadline) return;
        struct pollfd pfd = {.fd = 0, .events = POLLIN};
        int n = poll(&pfd, 1, wait_ms_until(deadline, now, 1000));
        if (n < 0 && errno != EINTR) return;
        if (n > 0) {
            if (pfd.revents & POLLNVAL) return;
            if (read(0, junk, sizeof junk) <= 0) return;
        }
    }
}

static void chat_event(struct epoll_event *ev, uint64_t now) {
    static char junk[65536];
    uint64_t idx = ev->data.u64;
    if (idx == (uint64_t)opt_conns) { /* the sender */
        if (ev->events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            if (irc_mode) {
                sub_read(&subs[idx], now); /* PINGs to answer, errors to report */
            } else if (ws_mode) {
                ws_read(&subs[idx], now);
            } else {
                ssize_t r = read(sender_fd, junk, sizeof junk);
                if (r == 0) fail("server closed the sender connection");
            }
        }
        if ((ev->events & EPOLLOUT) && (!ws_mode || subs[idx].open)) sender_flush();
    } else if (ws_mode) {
        ws_read(&subs[idx], now);
    } else {
        sub_read(&subs[idx], now);
    }
}

#define CHAT_TCP 0
#define CHAT_WS 1
#define CHAT_IRC 2

static int run_chat(int kind) {
    int ws = kind == CHAT_WS;
    ws_mode = ws;
    irc_mode = kind == CHAT_IRC;
    irc_tag = (unsigned)getpid() & 0xffu;
    subs = calloc((size_t)opt_conns + 1, sizeof *subs); /* [opt_conns] is the sender */
    if (!subs) fail("out of memory");
    uint64_t setup_deadline = now_ns() + (uint64_t)(opt_setup_timeout * 1e9);
    for (int i = 0; i <= opt_conns; i++) {
        subs[i].fd = tcp_connect();
        subs[i].sender = i == opt_conns;
        subs[i].open = !ws && !irc_mode; /* wschat: after the handshake; irc: once joined */
        if (ws) ws_handshake_request(subs[i].fd);
        if (irc_mode) { /* a few dozen bytes into a fresh socket: a blocking write */
            snprintf(subs[i].nick, sizeof subs[i].nick, "bm%02x_%d", irc_tag, i);
            char reg[96];
            int n = snprintf(reg, sizeof reg, "NICK %s\r\nUSER bm 0 * :bm\r\n", subs[i].nick);
            if (send(subs[i].fd, reg, (size_t)n, MSG_NOSIGNAL) != n) die("irc registration write");
        }
        set_nonblocking(subs[i].fd);
        ep_add(subs[i].fd, EPOLLIN, (uint64_t)i);
        if (i % 50 == 49) usleep(2000); /* let the server's accept loop keep up */
        /* irc: ngircd listens with a backlog of 10 and accepts one connection per pass of
         * its loop; a SYN it drops is sent again after a second, while this loop waits */
        if (irc_mode) usleep(1000);
    }
    sender_fd = subs[opt_conns].fd;
    struct sub *sender = &subs[opt_conns];
    struct epoll_event evs[1024];
    /* Warm-up: announce ("bw N"), backing off from 20 ms to 1 s, until every subscriber has
     * seen an announcement; then send a final one and wait until every subscriber has seen it,
     * so that nothing from the set-up (join notices, announcements) is still queued.
     * (wschat: the sender announces once its handshake is done; subscribers the server closed
     * are not waited for.) */
    uint64_t next_announce = 0, announce = 0, interval = 20000000ull;
    for (;;) {
        uint64_t now = now_ns();
        if (now >= setup_deadline) break;
        int alive = opt_conns - subs_closed;
        if (alive == 0) fail("chat setup: the server closed every subscriber connection");
        if (bw_final < 0 && subs_ready - ready_closed == alive) {
            bw_final = (int64_t)announce;
            next_announce = now; /* send the final one right now */
        }
        if (bw_final >= 0 && subs_caught_up - caught_closed == alive) break;
        /* irc: announce once everyone has joined (the sender too) */
        int joined = !irc_mode || irc_joined == opt_conns + 1;
        if (sender->open && joined && now >= next_announce &&
            (bw_final < 0 || announce == (uint64_t)bw_final)) {
            char line[64];
            int n = snprintf(line, sizeof line, "bw %llu", (unsigned long long)announce++);
            sender_line(line, n);
            sender_flush();
            next_announce = now + interval;
            if (interval < 1000000000ull) interval *= 2;
        }
        int waiting = bw_final >= 0 && announce > (uint64_t)bw_final; /* final one is out */
        int timeout =
            waiting || !sender->open || !joined ? 20 : wait_ms_until(next_announce, now, 20);
        int n = epoll_wait(epfd, evs, 1024, timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int k = 0; k < n; k++) chat_event(&evs[k], now_ns());
    }
    if (irc_mode && irc_joined < opt_conns + 1) {
        char what[160];
        snprintf(what, sizeof what,
                 "irc setup: after %.0f s, %d of %d connections had registered (001) and %d had "
                 "joined #bench",
                 opt_setup_timeout, irc_registered, opt_conns + 1, irc_joined);
        fail(what);
    }
    if (!sender->open) fail("wschat setup: the sender's handshake did not complete");
    int target = subs_ready - ready_closed;
    int closed_at_setup = ready_closed;
    if (target == 0) fail("chat setup: no subscriber received a line");
    t_setup_done = now_ns();
    t_start = t_setup_done + (uint64_t)(opt_warmup * 1e9);
    t_end = t_start + (uint64_t)(opt_duration * 1e9);
    uint64_t msg_timeout = 2000000000ull;
    uint64_t sent_at_start = 0;
    int closed_at_start = 0;
    for (;;) {
        uint64_t now = now_ns();
        if (!measuring && now >= t_start) {
            open_window();
            deliveries = late = chat_lost = 0;
            sent_at_start = next_seq;
            closed_at_start = subs_closed;
        }
        if (now >= t_end) break;
        /* retire messages every ready subscriber got (or that timed out); a subscriber the
         * server closed is no longer waited for */
        uint32_t want = (uint32_t)(target - (ready_closed - closed_at_setup));
        if (want == 0) fail("chat: the server closed every subscriber connection");
        while (oldest_seq < next_seq) {
            struct slot *sl = &ring[oldest_seq % RING];
            if (sl->count >= want) {
                oldest_seq++;
            } else if (now - sl->t > msg_timeout) {
                if (measuring) chat_lost += (uint64_t)want - sl->count;
                oldest_seq++;
            } else {
                break;
            }
        }
        /* send while the window and the rate allow */
        int rate_wait = 0;
        while (next_seq - oldest_seq < (uint64_t)opt_inflight && out_len < 4096) {
            if (opt_rate > 0) {
                double elapsed = (double)(now - t_setup_done) / 1e9;
                if ((double)next_seq >= opt_rate * elapsed + 1.0) {
                    rate_wait = 1;
                    break;
                }
            }
            char line[96];
            struct slot *sl = &ring[next_seq % RING];
            sl->t = now_ns();
            sl->count = 0;
            int n = snprintf(line, sizeof line, "bm %llu %llu", (unsigned long long)next_seq,
                             (unsigned long long)sl->t);
            sender_line(line, n);
            next_seq++;
        }
        if (out_len > 0 && !sender_want_out) sender_flush();
        int timeout = wait_ms_until(measuring ? t_end : t_start, now, rate_wait ? 1 : 50);
        int n = epoll_wait(epfd, evs, 1024, timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        uint64_t t = now_ns();
        for (int k = 0; k < n; k++) chat_event(&evs[k], t);
    }
    double secs = (double)(now_ns() - t_start) / 1e9;
    printf("{\"event\":\"result\",\"mode\":\"%s\",\"conns\":%d,\"ready\":%d,\"sent\":%llu,"
           "\"deliveries\":%llu,\"deliveries_per_s\":%.1f,\"lost\":%llu,\"late\":%llu,"
           "\"closed\":%d,",
           irc_mode ? "irc" : ws ? "wschat" : "chat", opt_conns, target,
           (unsigned long long)(next_seq - sent_at_start), (unsigned long long)deliveries,
           (double)deliveries / secs, (unsigned long long)chat_lost, (unsigned long long)late,
           subs_closed - closed_at_start);
    print_common(secs);
    printf("}\n");
    fflush(stdout);
    if (opt_linger > 0) linger_until_stdin_eof(opt_linger);
    return 0;
}

/* ---------------------------------------------------------------- http keep-alive */

#define HTTPBUF 8192
static const char http_request[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
#define HTTP_REQUEST_LEN ((ssize_t)(sizeof http_request - 1))

struct hc {
    int fd;
    int len;         /* bytes in buf */
    int in_body;     /* the head of the current response has been parsed */
    int close_after; /* the current response ends the connection */
    int64_t body_left;
    uint64_t t0;
    char buf[HTTPBUF];
};

static void hc_connect(struct hc *c) {
    c->fd = tcp_connect();
    c->len = 0;
    c->in_body = 0;
    c->close_after = 0;
}

static void hc_send(struct hc *c) {
    c->t0 = now_ns();
    /* MSG_NOSIGNAL: a server that closed gives EPIPE, not a silent death by SIGPIPE */
    ssize_t w = send(c->fd, http_request, (size_t)HTTP_REQUEST_LEN, MSG_NOSIGNAL);
    if (w != HTTP_REQUEST_LEN) {
        /* a 36-byte write into an empty socket buffer never splits on Linux loopback */
        if (w < 0) die("write");
        fail("short write of an HTTP request");
    }
}

/* Is token (any case) one of the comma-separated items of the header value [v, end)? */
static int has_token(const char *v, const char *end, const char *token) {
    size_t n = strlen(token);
    while (v < end) {
        while (v < end && (*v == ' ' || *v == '\t' || *v == ',')) v++;
        const char *s = v;
        while (v < end && *v != ',') v++;
        const char *e = v;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        if ((size_t)(e - s) == n && !strncasecmp(s, token, n)) return 1;
    }
    return 0;
}

/* The head of a response: h[0..n) ends in CRLFCRLF. */
static void hc_head(struct hc *c, const char *h, int n) {
    if (n < 16 || strncmp(h, "HTTP/1.", 7) || h[8] != ' ') fail("http: no HTTP/1.x status line");
    int status = atoi(h + 9);
    if (status != 200) {
        char what[64];
        snprintf(what, sizeof what, "http: status %d, not 200", status);
        fail(what);
    }
    c->close_after = h[7] == '0'; /* HTTP/1.0 closes unless it says keep-alive */
    int64_t length = -1;
    const char *end = h + n - 2; /* the empty line that ends the head */
    const char *p = (const char *)memmem(h, (size_t)n, "\r\n", 2) + 2;
    while (p < end) {
        const char *eol = memmem(p, (size_t)(h + n - p), "\r\n", 2);
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon) fail("http: a header line without a colon");
        size_t name = (size_t)(colon - p);
        const char *v = colon + 1;
        if (name == 14 && !strncasecmp(p, "content-length", 14)) {
            char *stop;
            length = (int64_t)strtoll(v, &stop, 10);
            while (stop < eol && (*stop == ' ' || *stop == '\t')) stop++;
            if (length < 0 || stop != eol) fail("http: a bad Content-Length");
        } else if (name == 10 && !strncasecmp(p, "connection", 10)) {
            if (has_token(v, eol, "close")) c->close_after = 1;
            else if (has_token(v, eol, "keep-alive")) c->close_after = 0;
        } else if (name == 17 && !strncasecmp(p, "transfer-encoding", 17)) {
            fail("http: a response with Transfer-Encoding instead of Content-Length");
        }
        p = eol + 2;
    }
    if (length < 0) fail("http: a response without Content-Length");
    c->body_left = length;
    c->in_body = 1;
}

/* Take what the buffer holds; 1 when it completed a response. */
static int hc_parse(struct hc *c) {
    if (!c->in_body) {
        char *e = memmem(c->buf, (size_t)c->len, "\r\n\r\n", 4);
        if (!e) {
            if (c->len >= HTTPBUF) fail("http: a response head longer than 8 KiB");
            return 0;
        }
        int n = (int)(e + 4 - c->buf);
        hc_head(c, c->buf, n);
        memmove(c->buf, c->buf + n, (size_t)(c->len - n));
        c->len -= n;
    }
    int take = c->body_left < (int64_t)c->len ? (int)c->body_left : c->len;
    c->body_left -= take;
    memmove(c->buf, c->buf + take, (size_t)(c->len - take));
    c->len -= take;
    if (c->body_left > 0) return 0;
    if (c->len > 0) fail("http: bytes after the end of a response");
    c->in_body = 0;
    return 1;
}

/* One read; -1 when there was nothing to read, else 1 when a response is complete. */
static int hc_read(struct hc *c) {
    ssize_t r = read(c->fd, c->buf + c->len, (size_t)(HTTPBUF - c->len));
    if (r < 0) {
        if (errno == EAGAIN || errno == EINTR) return -1;
        die("read");
    }
    if (r == 0) fail("server closed a connection without a Connection: close response");
    c->len += (int)r;
    return hc_parse(c);
}

static int run_http(void) {
    struct hc *cs = calloc((size_t)opt_conns, sizeof *cs);
    if (!cs) fail("out of memory");
    for (int i = 0; i < opt_conns; i++) {
        /* one request first, blocking: the server answers before the clock starts */
        hc_connect(&cs[i]);
        set_recv_timeout(cs[i].fd, 5.0);
        hc_send(&cs[i]);
        for (;;) {
            ssize_t r = read(cs[i].fd, cs[i].buf + cs[i].len, (size_t)(HTTPBUF - cs[i].len));
            if (r < 0) {
                if (errno == EINTR) continue;
                die("setup read (no HTTP response)");
            }
            if (r == 0) fail("setup read: server closed the connection");
            cs[i].len += (int)r;
            if (hc_parse(&cs[i])) break;
        }
        if (cs[i].close_after) {
            close(cs[i].fd);
            hc_connect(&cs[i]);
        }
        set_nonblocking(cs[i].fd);
        ep_add(cs[i].fd, EPOLLIN, (uint64_t)i);
    }
    t_setup_done = now_ns();
    t_start = t_setup_done + (uint64_t)(opt_warmup * 1e9);
    t_end = t_start + (uint64_t)(opt_duration * 1e9);
    for (int i = 0; i < opt_conns; i++) hc_send(&cs[i]);
    uint64_t rts = 0, reconnects = 0;
    struct epoll_event evs[1024];
    for (;;) {
        uint64_t now = now_ns();
        if (!measuring && now >= t_start) {
            open_window();
            rts = reconnects = 0;
        }
        if (now >= t_end) break;
        int n = epoll_wait(epfd, evs, 1024, wait_ms_until(measuring ? t_end : t_start, now, 50));
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int k = 0; k < n; k++) {
            uint64_t idx = evs[k].data.u64;
            struct hc *c = &cs[idx];
            if (hc_read(c) != 1) continue;
            if (measuring) {
                hist_add(now_ns() - c->t0);
                rts++;
            }
            if (c->close_after) { /* the server's request limit per connection: open anew */
                close(c->fd);     /* also takes it out of the epoll set */
                hc_connect(c);
                set_nonblocking(c->fd);
                ep_add(c->fd, EPOLLIN, idx);
                if (measuring) reconnects++;
            }
            hc_send(c);
        }
    }
    double secs = (double)(now_ns() - t_start) / 1e9;
    printf("{\"event\":\"result\",\"mode\":\"http\",\"conns\":%d,\"round_trips\":%llu,"
           "\"rt_per_s\":%.1f,\"reconnects\":%llu,",
           opt_conns, (unsigned long long)rts, (double)rts / secs,
           (unsigned long long)reconnects);
    print_common(secs);
    printf("}\n");
    fflush(stdout);
    return 0;
}

/* ---------------------------------------------------------------- idle connections */

static int run_idle(int udp) {
    char msg[64], buf[65536];
    memset(msg, 'i', sizeof msg);
    msg[63] = '\n';
    int *fds = calloc((size_t)opt_conns, sizeof *fds);
    for (int i = 0; i < opt_conns; i++) {
        if (udp) {
            fds[i] = udp_connect();
            set_recv_timeout(fds[i], 1.0);
            int ok = 0;
            for (int attempt = 0; attempt < 5 && !ok; attempt++) {
                if (send(fds[i], msg, sizeof msg, 0) < 0) die("send udp");
                ok = recv(fds[i], buf, sizeof buf, 0) > 0;
            }
            if (!ok) fail("udp setup: no echo from the server");
        } else {
            fds[i] = tcp_connect();
            set_recv_timeout(fds[i], 5.0);
            blocking_echo(fds[i], msg, (int)sizeof msg);
        }
    }
    printf("{\"event\":\"ready\",\"mode\":\"%s\",\"conns\":%d}\n", udp ? "idle-udp" : "idle-tcp",
           opt_conns);
    fflush(stdout);
    /* hold until stdin closes or --hold seconds pass */
    uint64_t deadline = now_ns() + (uint64_t)(opt_hold * 1e9);
    struct epoll_event ev = {.events = EPOLLIN};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) < 0) {
        /* stdin is a regular file or /dev/null: just hold for --hold seconds */
        while (now_ns() < deadline) usleep(10000);
    }
    for (;;) {
        uint64_t now = now_ns();
        if (now >= deadline) break;
        int n = epoll_wait(epfd, &ev, 1, wait_ms_until(deadline, now, 1000));
        if (n < 0 && errno != EINTR) die("epoll_wait");
        if (n > 0) {
            ssize_t r = read(0, buf, sizeof buf);
            if (r <= 0) break;
        }
    }
    printf("{\"event\":\"done\"}\n");
    fflush(stdout);
    return 0;
}

/* ---------------------------------------------------------------- main */

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen MODE --port P [--host H] [--conns N] [--duration S] [--warmup S]\n"
            "       [--size B] [--chunk B] [--window B] [--rate MSG/S] [--inflight N] [--hold S]\n"
            "       [--setup-timeout S] [--linger S]\n"
            "MODE: tcp | stream | udp | chat | wschat | irc | http | idle-tcp | idle-udp\n");
    exit(64);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    opt_mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(k, "--host")) opt_host = v;
        else if (!strcmp(k, "--port")) opt_port = atoi(v);
        else if (!strcmp(k, "--conns")) opt_conns = atoi(v);
        else if (!strcmp(k, "--duration")) opt_duration = atof(v);
        else if (!strcmp(k, "--warmup")) opt_warmup = atof(v);
        else if (!strcmp(k, "--size")) opt_size = atoi(v);
        else if (!strcmp(k, "--chunk")) opt_chunk = atoi(v);
        else if (!strcmp(k, "--window")) opt_window = atol(v);
        else if (!strcmp(k, "--rate")) opt_rate = atof(v);
        else if (!strcmp(k, "--inflight")) opt_inflight = atoi(v);
        else if (!strcmp(k, "--hold")) opt_hold = atof(v);
        else if (!strcmp(k, "--setup-timeout")) opt_setup_timeout = atof(v);
        else if (!strcmp(k, "--linger")) opt_linger = atof(v);
        else usage();
    }
    if (opt_port <= 0 || opt_port > 65535 || opt_conns < 1 || opt_conns > 100000) usage();
    if (opt_size < 1 || opt_size > 65536 || opt_chunk < 1 || opt_chunk > (1 << 24)) usage();
    if (opt_duration <= 0 || opt_duration > 3600 || opt_warmup < 0 || opt_warmup > 600) usage();
    if (opt_inflight < 1 || opt_inflight > RING / 2 || opt_window < 1) usage();
    if (opt_setup_timeout <= 0 || opt_setup_timeout > 3600) usage();
    if (opt_linger < 0 || opt_linger > 600) usage();
    raise_nofile();
    memset(&server_addr, 0, sizeof server_addr);
    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)opt_port);
    if (inet_pton(AF_INET, opt_host, &server_addr.sin_addr) != 1) fail("bad --host");
    epfd = epoll_create1(0);
    if (epfd < 0) die("epoll_create1");
    if (!strcmp(opt_mode, "tcp")) return run_tcp();
    if (!strcmp(opt_mode, "stream")) return run_stream();
    if (!strcmp(opt_mode, "udp")) return run_udp();
    if (!strcmp(opt_mode, "chat")) return run_chat(CHAT_TCP);
    if (!strcmp(opt_mode, "wschat")) return run_chat(CHAT_WS);
    if (!strcmp(opt_mode, "irc")) return run_chat(CHAT_IRC);
    if (!strcmp(opt_mode, "http")) return run_http();
    if (!strcmp(opt_mode, "idle-tcp")) return run_idle(0);
    if (!strcmp(opt_mode, "idle-udp")) return run_idle(1);
    usage();
    return 64;
}
