// The error category of libcgrun and error messages that name what they touched.

#include <cgrun/error.hpp>

namespace cgrun {

namespace {
class cgrun_category final : public std::error_category {
public:
    const char* name() const noexcept override { return "cgrun"; }
    std::string message(int c) const override
    {
        switch (static_cast<errc>(c)) {
        case errc::invalid_argument: return "invalid argument";
        case errc::cgroup2_unavailable: return "cgroup2 unavailable";
        case errc::cgroup_not_delegated: return "no delegated cgroup";
        case errc::systemd_unavailable: return "systemd unavailable";
        case errc::scope_failed: return "transient scope failed";
        case errc::controller_unavailable: return "controller unavailable";
        case errc::exec_not_found: return "command not found";
        case errc::exec_not_executable: return "command not executable";
        case errc::exec_failed: return "exec failed";
        case errc::spawn_failed: return "spawn failed";
        case errc::still_populated: return "processes still alive";
        }
        return "unknown cgrun error";
    }
};
} // namespace

const std::error_category& category() noexcept
{
    static const cgrun_category c;
    return c;
}

std::string error::message() const
{
    // Domain errors carry their whole story in the context.
    if (&code.category() == &category() && !context.empty())
        return context;
    if (context.empty())
        return code.message();
    if (!code)
        return context;
    return context + ": " + code.message();
}

error error::from_errno(int err, std::string context)
{
    return error{std::error_code(err, std::system_category()), std::move(context)};
}

error error::make(errc e, std::string context)
{
    return error{make_error_code(e), std::move(context)};
}

} // namespace cgrun
