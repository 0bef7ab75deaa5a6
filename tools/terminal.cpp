#include "terminal.hpp"

#include <fcntl.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

namespace cgrun::tool {

terminal_handoff terminal_handoff::begin(pid_t command_pgid)
{
    terminal_handoff h;
    if (command_pgid <= 0)
        return h;
    int fd = ::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return h;
    unique_fd tty(fd);
    pid_t own = ::getpgrp();
    if (::tcgetpgrp(tty.get()) != own || own == command_pgid)
        return h;
    h.tty_ = std::move(tty);
    h.command_pgid_ = command_pgid;
    h.own_pgid_ = own;
    h.give();
    return h;
}

void terminal_handoff::give() noexcept
{
    if (!active())
        return;
    // Continued by `bg`, cgrun is not in the foreground: the shell keeps the terminal.
    if (::tcgetpgrp(tty_.get()) == own_pgid_)
        given_ = ::tcsetpgrp(tty_.get(), command_pgid_) == 0;
    (void)::killpg(command_pgid_, SIGCONT);
}

void terminal_handoff::take_back() noexcept
{
    if (!active() || !given_)
        return;
    (void)::tcsetpgrp(tty_.get(), own_pgid_);
    given_ = false;
}

void terminal_handoff::relay_stop() noexcept
{
    if (!active())
        return;
    // Only a job-control shell above cgrun (its parent, in another process group of the same
    // session) would ever continue a stopped cgrun: without one, resume the command.
    pid_t parent = ::getppid();
    if (::getsid(parent) != ::getsid(0) || ::getpgid(parent) == own_pgid_) {
        (void)::killpg(command_pgid_, SIGCONT);
        return;
    }
    take_back();
    // SIGSTOP rather than raise(SIGTSTP): cgrun may not ignore or block it.
    (void)::kill(::getpid(), SIGSTOP);
    give();
}

} // namespace cgrun::tool
