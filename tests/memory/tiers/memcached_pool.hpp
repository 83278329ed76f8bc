// Test and benchmark helper: memcached server processes on loopback ports chosen at run time.
// Each server is `memcached -M -m MB -l 127.0.0.1 -p PORT` (eviction off, so a full server is an
// error). Children die with the test process (PR_SET_PDEATHSIG), so a crashed test leaves no
// server behind; stop() and the destructor kill and reap them.
// A server counts as up only when the process answering `stats` on its port is the child started
// (its `pid` statistic): a free port is only free until someone binds it, so under `ctest -j`
// another test's server can take it between the pick and the start; the start then retries on a
// new port (the child, unable to bind, exits).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <poll.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engram/error.hpp"

namespace engram::test {

/// The memcached binary ($ENGRAM_MEMCACHED, else the first `memcached` on PATH), "" if none.
inline std::string memcached_binary() {
  if (const char* env = std::getenv("ENGRAM_MEMCACHED"); env != nullptr && *env)
    return ::access(env, X_OK) == 0 ? env : "";
  std::string path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "/usr/bin:/bin";
  path += ":/usr/bin:/usr/local/bin:/usr/sbin";
  size_t begin = 0;
  while (begin <= path.size()) {
    const size_t end = std::min(path.find(':', begin), path.size());
    const std::string candidate = path.substr(begin, end - begin) + "/memcached";
    if (end > begin && ::access(candidate.c_str(), X_OK) == 0) return candidate;
    begin = end + 1;
  }
  return "";
}

/// A loopback TCP port nobody listens on right now.
inline int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ENGRAM_CHECK(fd >= 0, "free_loopback_port: socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  ENGRAM_CHECK(ok, "free_loopback_port: bind failed");
  return ntohs(addr.sin_port);
}

/// The `pid` statistic of the memcached server answering on 127.0.0.1:port, or -1 when nothing
/// accepts there or the listener does not answer `stats` within `timeout_ms`.
inline pid_t memcached_stats_pid(int port, int timeout_ms = 2000) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  pid_t pid = -1;
  static constexpr char kRequest[] = "stats\r\n";
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::send(fd, kRequest, sizeof(kRequest) - 1, MSG_NOSIGNAL) ==
          static_cast<ssize_t>(sizeof(kRequest) - 1)) {
    std::string reply;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (reply.find("END\r\n") == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now())
                            .count();
      pollfd p{fd, POLLIN, 0};
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) break;
      char buf[4096];
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      reply.append(buf, static_cast<size_t>(n));
    }
    const size_t at = reply.find("STAT pid ");
    if (at != std::string::npos && reply.find("END\r\n") != std::string::npos)
      pid = static_cast<pid_t>(std::atol(reply.c_str() + at + 9));
  }
  ::close(fd);
  return pid;
}

/// One memcached server process.
class MemcachedProcess {
 public:
  MemcachedProcess(std::string binary, int memory_mb)
      : binary_(std::move(binary)), mb_(memory_mb) {}
  MemcachedProcess(const MemcachedProcess&) = delete;
  MemcachedProcess& operator=(const MemcachedProcess&) = delete;
  MemcachedProcess(MemcachedProcess&& o) noexcept
      : binary_(std::move(o.binary_)),
        mb_(o.mb_),
        port_(o.port_),
        pid_(std::exchange(o.pid_, -1)),
        pick_port_(std::move(o.pick_port_)) {}
  ~MemcachedProcess() { stop(); }

  int port() const noexcept { return port_; }
  bool running() const noexcept { return pid_ > 0; }
  /// The child's process id (-1 when not running).
  pid_t pid() const noexcept { return pid_; }
  /// Replaces free_loopback_port as the source of candidate ports (tests of the retry).
  void set_port_picker(std::function<int()> picker) { pick_port_ = std::move(picker); }

  /// Starts on `port` (fresh candidate ports when 0; the previous port first when restarting) and
  /// waits until the child itself answers `stats` there. Throws if it does not come up within 10 s
  /// on any of 8 candidate ports (on `port` alone when given).
  void start(int port = 0) {
    stop();
    const int previous = port_;
    for (int attempt = 0; attempt < 8; ++attempt) {
      port_ = port > 0 ? port : (previous > 0 && attempt == 0 ? previous : pick_port_());
      if (launch()) return;
      if (port > 0) break;
    }
    detail::fail("memcached (", binary_, ") did not start on 127.0.0.1:", port_,
                 port > 0 ? "" : " nor on 7 other free ports",
                 " (the port was taken, or the server never answered `stats` with its own pid)");
  }
  /// Kills the server (SIGKILL: as a crash would) and reaps it.
  void stop() noexcept {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  bool launch() {
    const std::string port = std::to_string(port_), mb = std::to_string(mb_);
    std::vector<std::string> args = {binary_, "-M", "-m", mb,  "-l", "127.0.0.1",
                                     "-p",    port, "-U", "0", "-t", "2"};
    if (::geteuid() == 0) {  // memcached refuses to run as root without -u
      args.push_back("-u");
      args.push_back("root");
    }
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    ENGRAM_CHECK(pid >= 0, "fork failed");
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      const int devnull = ::open("/dev/null", O_RDWR);
      if (devnull >= 0) {
        ::dup2(devnull, 0);
        ::dup2(devnull, 1);
        ::dup2(devnull, 2);
      }
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(binary_.c_str(), argv.data());
      ::_exit(127);
    }
    pid_ = pid;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // exited: port taken or bad arguments
        pid_ = -1;
        return false;
      }
      // Any listener would accept a connect; only our child answers with our child's pid.
      if (memcached_stats_pid(port_) == pid_) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    stop();
    return false;
  }

  std::string binary_;
  int mb_;
  int port_ = 0;
  pid_t pid_ = -1;
  std::function<int()> pick_port_ = free_loopback_port;
};

/// `count` servers of `memory_mb` MiB each.
class MemcachedPool {
 public:
  MemcachedPool(const std::string& binary, int count, int memory_mb) {
    for (int i = 0; i < count; ++i) {
      servers_.emplace_back(binary, memory_mb);
      servers_.back().start();
    }
  }
  MemcachedProcess& server(size_t i) { return servers_.at(i); }
  size_t size() const noexcept { return servers_.size(); }
  /// "127.0.0.1:P1,127.0.0.1:P2,..."
  std::string addresses() const {
    std::string s;
    for (size_t i = 0; i < servers_.size(); ++i)
      s += (i ? ",127.0.0.1:" : "127.0.0.1:") + std::to_string(servers_[i].port());
    return s;
  }

 private:
  std::vector<MemcachedProcess> servers_;
};

}  // namespace engram::test
