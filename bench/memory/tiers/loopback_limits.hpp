// loopback_limits.hpp: what TCP over loopback allows this machine, as the yardstick for a remote
// tier's rows/s (remote_tier_bench.cpp). Measured once per process, in-process, on 127.0.0.1 only:
//   round_trip_s   median time of a 1-byte request answered by 1 byte (TCP_NODELAY, a thread per
//                  end): the least a batched multi-get can cost, whatever its size;
//   bytes_per_s    one connection streaming 256 MiB in 1 MiB writes to a reader that drops them.
// A batch that moves `bytes` then takes at least round_trip_s + bytes / bytes_per_s:
// limit_rows_per_s turns that into the rows/s a perfect client and server could reach. Throws
// std::runtime_error when a socket call fails.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "engram/detail/posix_file.hpp"

namespace engram::bench {

struct LoopbackLimits {
  double round_trip_s = 0;
  double bytes_per_s = 0;

  /// Rows/s at best for `rows` rows moving `bytes` bytes in `batches` round trips.
  double limit_rows_per_s(double rows, double bytes, double batches) const {
    return rows / (batches * round_trip_s + bytes / bytes_per_s);
  }
};

namespace detail_loopback {

using engram::detail::FileDescriptor;

[[noreturn]] inline void fail(const char* what) {
  throw std::runtime_error(std::string("loopback limits: ") + what + " failed: errno " +
                           std::to_string(errno));
}

inline void set_nodelay(int fd) {
  const int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) fail("TCP_NODELAY");
}

inline void send_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail("send");
    p += w;
    n -= static_cast<size_t>(w);
  }
}

inline void recv_all(int fd, char* p, size_t n) {
  while (n > 0) {
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) fail("recv");
    p += r;
    n -= static_cast<size_t>(r);
  }
}

/// A connected pair over 127.0.0.1 (listener on an ephemeral port).
inline std::pair<FileDescriptor, FileDescriptor> connected_pair() {
  FileDescriptor listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener.valid()) fail("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) fail("bind");
  if (::listen(listener.get(), 1) != 0) fail("listen");
  if (::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    fail("getsockname");
  FileDescriptor client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!client.valid()) fail("socket");
  if (::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) fail("connect");
  FileDescriptor server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!server.valid()) fail("accept");
  set_nodelay(client.get());
  set_nodelay(server.get());
  return {std::move(client), std::move(server)};
}

inline double measure_round_trip(int rounds) {
  auto [client, server] = connected_pair();
  std::thread echo([fd = server.get(), rounds] {
    char c = 0;
    for (int i = 0; i < rounds; ++i) {
      recv_all(fd, &c, 1);
      send_all(fd, &c, 1);
    }
  });
  std::vector<double> times;
  times.reserve(static_cast<size_t>(rounds));
  char c = 'x';
  for (int i = 0; i < rounds; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    send_all(client.get(), &c, 1);
    recv_all(client.get(), &c, 1);
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  echo.join();
  std::nth_element(times.begin(), times.begin() + rounds / 2, times.end());
  return times[static_cast<size_t>(rounds / 2)];
}

inline double measure_stream(size_t total_bytes, size_t chunk) {
  auto [client, server] = connected_pair();
  std::thread sink([fd = server.get(), total_bytes, chunk] {
    std::vector<char> buffer(chunk);
    size_t got = 0;
    while (got < total_bytes) {
      const ssize_t r = ::recv(fd, buffer.data(), buffer.size(), 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) fail("recv");
      got += static_cast<size_t>(r);
    }
    const char done = 1;
    send_all(fd, &done, 1);
  });
  const std::vector<char> buffer(chunk, 'x');
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t sent = 0; sent < total_bytes; sent += chunk)
    send_all(client.get(), buffer.data(), chunk);
  char done = 0;
  recv_all(client.get(), &done, 1);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  sink.join();
  return static_cast<double>(total_bytes) / seconds;
}

}  // namespace detail_loopback

/// Measured on the first call (about a second), then cached.
inline const LoopbackLimits& loopback_limits() {
  static const LoopbackLimits limits = [] {
    LoopbackLimits l;
    l.round_trip_s = detail_loopback::measure_round_trip(2000);
    l.bytes_per_s = detail_loopback::measure_stream(size_t{256} << 20, size_t{1} << 20);
    return l;
  }();
  return limits;
}

}  // namespace engram::bench
