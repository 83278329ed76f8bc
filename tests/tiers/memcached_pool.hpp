// Test and benchmark helper: memcached server processes on loopback ports chosen at run time.
// Each server is `memcached -M -m MB -l 127.0.0.1 -p PORT` (eviction off, so a full server is an
// error). Children die with the test process (PR_SET_PDEATHSIG), so a crashed test leaves no
// server behind; stop() and the destructor kill and reap them.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
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

/// Whether something accepts TCP connections on 127.0.0.1:port.
inline bool loopback_port_open(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
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
        pid_(std::exchange(o.pid_, -1)) {}
  ~MemcachedProcess() { stop(); }

  int port() const noexcept { return port_; }
  bool running() const noexcept { return pid_ > 0; }

  /// Starts on `port` (a fresh free port when 0; the previous port when restarting) and waits
  /// until it accepts connections. Throws if it does not come up within 10 s.
  void start(int port = 0) {
    stop();
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = port > 0 ? port : (port_ > 0 && attempt == 0 ? port_ : free_loopback_port());
      if (launch()) return;
      if (port > 0) break;
      port_ = 0;
    }
    detail::fail("memcached (", binary_, ") did not start on 127.0.0.1:", port_);
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
      if (loopback_port_open(port_)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    stop();
    return false;
  }

  std::string binary_;
  int mb_;
  int port_ = 0;
  pid_t pid_ = -1;
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
