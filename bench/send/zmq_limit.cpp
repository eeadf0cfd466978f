// bench/send.sh's helper: bare libzmq moving the same bytes as n3-send, the way any ZeroMQ
// program would (PUSH connects and sends each record as one multipart message of 1 MiB
// frames, zero-copy from the mapped file; PULL binds, takes whole messages and writes their
// frames out). No checksums, no record parsing, glibc's default allocator settings: the speed
// of ZeroMQ itself, a physical limit for n3-send, timed by the script like n3-send and socat.
//
//   zmq_limit send tcp://127.0.0.1:PORT FILE COUNT   (FILE holds COUNT records of equal size)
//   zmq_limit recv tcp://127.0.0.1:PORT COUNT > /dev/null
#include <zmq.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(const char* what) {
    std::fprintf(stderr, "zmq_limit: %s: %s\n", what, std::strerror(errno));
    return 2;
}

static int send_file(void* ctx, const char* endpoint, const char* path, long count) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fail(path);
    struct stat st {};
    if (fstat(fd, &st) != 0) return fail(path);
    const size_t total = static_cast<size_t>(st.st_size), each = total / static_cast<size_t>(count);
    void* map = mmap(nullptr, total, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) return fail("mmap");
    void* s = zmq_socket(ctx, ZMQ_PUSH);
    int linger = -1; // zmq_ctx_term waits until every frame was written
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(s, endpoint) != 0) return fail("connect");
    const auto* base = static_cast<unsigned char*>(map);
    for (long r = 0; r < count; ++r) {
        const unsigned char* rec = base + static_cast<size_t>(r) * each;
        for (size_t off = 0; off < each; off += size_t(1) << 20) {
            const size_t n = std::min(each - off, size_t(1) << 20);
            zmq_msg_t m;
            zmq_msg_init_data(&m, const_cast<unsigned char*>(rec + off), n, nullptr, nullptr);
            if (zmq_msg_send(&m, s, off + n < each ? ZMQ_SNDMORE : 0) < 0) return fail("send");
        }
    }
    zmq_close(s);
    zmq_ctx_term(ctx); // before the mapping goes
    munmap(map, total);
    close(fd);
    return 0;
}

static int receive(void* ctx, const char* endpoint, long count) {
    void* s = zmq_socket(ctx, ZMQ_PULL);
    if (zmq_bind(s, endpoint) != 0) return fail("bind");
    for (long r = 0; r < count; ++r) {
        int more = 1;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, s, 0) < 0) return fail("recv");
            const auto* p = static_cast<const char*>(zmq_msg_data(&m));
            size_t n = zmq_msg_size(&m);
            while (n > 0) {
                ssize_t w = write(1, p, n);
                if (w < 0) return fail("write");
                p += w;
                n -= static_cast<size_t>(w);
            }
            more = zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    return 0;
}

int main(int argc, char** argv) {
    void* ctx = zmq_ctx_new();
    if (argc == 5 && std::string(argv[1]) == "send")
        return send_file(ctx, argv[2], argv[3], std::atol(argv[4]));
    if (argc == 4 && std::string(argv[1]) == "recv")
        return receive(ctx, argv[2], std::atol(argv[3]));
    std::fprintf(stderr, "usage: zmq_limit send ENDPOINT FILE COUNT | recv ENDPOINT COUNT\n");
    return 2;
}
