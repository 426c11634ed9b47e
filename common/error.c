#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sbx_common.h"

static void vset(sbx_error *err, const char *fmt, va_list ap)
{
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
}

int sbx_error_set(sbx_error *err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    err->sys_errno = 0;
    vset(err, fmt, ap);
    va_end(ap);
    return code;
}

int sbx_error_sys(sbx_error *err, int code, int sys_errno, const char *fmt, ...)
{
    if (!err)
        return code;
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    err->sys_errno = sys_errno;
    vset(err, fmt, ap);
    va_end(ap);
    return code;
}

void sbx_error_where(sbx_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->where, sizeof err->where, fmt, ap);
    va_end(ap);
}

int sbx_error_wrap(sbx_error *err, const char *fmt, ...)
{
    if (!err)
        return SBX_EINTERNAL;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* Truncation is acceptable: the outer context comes first. */
    size_t n = strlen(prefix);
    if (n > sizeof err->msg - 3)
        n = sizeof err->msg - 3;
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    size_t room = sizeof err->msg - n - 3;
    size_t m = strnlen(old, room);
    memcpy(err->msg + n + 2, old, m);
    err->msg[n + 2 + m] = '\0';
    return err->code;
}

void sbx_error_clear(sbx_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
}

const char *sbx_error_format(const sbx_error *err, char *buf, size_t len)
{
    const char *sys = err->sys_errno ? strerror(err->sys_errno) : NULL;
    snprintf(buf, len, "%s%s%s%s%s", err->where[0] ? err->where : "", err->where[0] ? ": " : "",
             err->msg[0] ? err->msg : sbx_error_code_name(err->code), sys ? ": " : "",
             sys ? sys : "");
    return buf;
}

const char *sbx_error_code_name(int code)
{
    switch (code) {
    case SBX_OK: return "ok";
    case SBX_EINVAL: return "invalid argument";
    case SBX_ENOTFOUND: return "not found";
    case SBX_EDIGEST: return "digest mismatch";
    case SBX_EIO: return "i/o error";
    case SBX_ENOSPC: return "no space left";
    case SBX_EAUTH: return "unauthorized";
    case SBX_ENET: return "network error";
    case SBX_ESTEP: return "step failed";
    case SBX_ETIMEOUT: return "timed out";
    case SBX_EBUSY: return "busy";
    case SBX_ECORRUPT: return "store corrupt";
    case SBX_ENOMEM: return "out of memory";
    case SBX_ELIMIT: return "size limit exceeded";
    case SBX_EUNSUPPORTED: return "unsupported";
    case SBX_ENOPLATFORM: return "no such platform";
    case SBX_ECANCELED: return "cancelled";
    default: return "internal error";
    }
}

int sbx__errno_code(int e)
{
    return (e == ENOSPC || e == EDQUOT) ? SBX_ENOSPC : (e == ENOMEM ? SBX_ENOMEM : SBX_EIO);
}
