// Fuzzes the record reader (memory-mapped and streaming paths) and the safetensors parser:
// any input must either parse or throw n3::Error, never crash, hang or read out of bounds. The
// mapped file is a file in memory (memfile.hpp).
#include "memfile.hpp"
#include "record/error.hpp"
#include "record/format.hpp"
#include "record/safetensors.hpp"

#include <cstdint>
#include <fcntl.h>
#include <string>
#include <thread>
#include <unistd.h>

namespace {

void read_all(const std::string& path) {
    try {
        n3::Input in(path, true);
        n3::RecordReader reader(in, uint64_t(1) << 26);
        while (auto rec = reader.next())
            if (n3::is_tensor_type(rec->type())) {
                auto set = n3::TensorSet::parse(rec->payload());
                for (auto& t : set.tensors()) n3::tensor_l2(t.dtype, set.data(t));
            }
    } catch (const n3::Error&) {
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // A regular file: the reader maps it.
    static n3::fuzz::MemFile file("n3-fuzz-record");
    if (file.set(data, size)) read_all(file.path());
    // A pipe: the reader streams it. An input that fits in the pipe's buffer is written before
    // the reader starts; a larger one by a thread as the reader goes.
    int fds[2];
    if (pipe(fds) == 0) {
        auto write_all = [&] {
            size_t off = 0;
            while (off < size) {
                ssize_t w = write(fds[1], data + off, size - off);
                if (w <= 0) break;
                off += static_cast<size_t>(w);
            }
            close(fds[1]);
        };
        const int room = fcntl(fds[1], F_GETPIPE_SZ);
        std::thread writer;
        if (room > 0 && size <= static_cast<size_t>(room))
            write_all();
        else
            writer = std::thread(write_all);
        read_all("/proc/self/fd/" + std::to_string(fds[0]));
        close(fds[0]);
        if (writer.joinable()) writer.join();
    }
    // The payload parser on its own, without framing.
    try {
        auto set = n3::TensorSet::parse(n3::ByteView(data, size));
        for (auto& t : set.tensors()) n3::tensor_l2(t.dtype, set.data(t));
    } catch (const n3::Error&) {
    }
    return 0;
}
