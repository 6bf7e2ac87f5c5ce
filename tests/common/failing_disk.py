#!/usr/bin/python3
"""A disk that fails on demand, for lookout's fault tests: a FUSE file system passing every
call through to a folder, except that while the flag file exists every write and fsync fails
with EIO, as a dying SD card's do. The kernel hands the error to lookout's real system calls.

    failing_disk.py BACKING MOUNT FLAG

Runs in the foreground until unmounted. Debian's python3-fusepy (scripts/setup installs it).
"""
import errno
import os
import sys

from fusepy import FUSE, FuseOSError, Operations


class FailingDisk(Operations):
    def __init__(self, backing, flag):
        self.backing = backing
        self.flag = flag

    def _path(self, path):
        return os.path.join(self.backing, path.lstrip("/"))

    def _failing(self):
        return os.path.exists(self.flag)

    def getattr(self, path, fh=None):
        st = os.lstat(self._path(path))
        keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid")
        return {k: getattr(st, k) for k in keys}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._path(path))

    def mkdir(self, path, mode):
        os.mkdir(self._path(path), mode)

    def rmdir(self, path):
        os.rmdir(self._path(path))

    def unlink(self, path):
        os.unlink(self._path(path))

    def rename(self, old, new):
        os.rename(self._path(old), self._path(new))

    def statfs(self, path):
        s = os.statvfs(self._path(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")
        return {k: getattr(s, k) for k in keys}

    def open(self, path, flags):
        return os.open(self._path(path), flags)

    def create(self, path, mode, fi=None):
        return os.open(self._path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        if self._failing():
            raise FuseOSError(errno.EIO)
        return os.pwrite(fh, data, offset)

    def truncate(self, path, length, fh=None):
        os.truncate(self._path(path), length)

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        if self._failing():
            raise FuseOSError(errno.EIO)
        os.fsync(fh)

    def release(self, path, fh):
        os.close(fh)

    def utimens(self, path, times=None):
        os.utime(self._path(path), times)

    def chmod(self, path, mode):
        os.chmod(self._path(path), mode)


if __name__ == "__main__":
    backing, mount, flag = sys.argv[1:4]
    # direct_io: every write reaches write() above when it is made, not when the page cache
    # is flushed, so the error comes back to the call that made it.
    FUSE(FailingDisk(backing, flag), mount, foreground=True, nothreads=True, direct_io=True)
