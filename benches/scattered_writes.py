# Why page writes cost what they cost on this machine: 16 pages of 4 KiB
# written as 16 contiguous writes, as one 64 KiB write, or scattered over a
# 64 MiB file, each time followed by fdatasync. Prints µs per round.
#
#   python3 benches/scattered_writes.py [DIR]
import os, random, sys, time

path = os.path.join(sys.argv[1] if len(sys.argv) > 1 else '.', 'scattered-writes.bin')
size, page = 64 << 20, 4096
fd = os.open(path, os.O_RDWR | os.O_CREAT)
try:
    os.pwrite(fd, b'\1' * size, 0)
    os.fsync(fd)
    data = b'\2' * page

    def round_us(mode, rounds=300):
        start = time.perf_counter()
        for _ in range(rounds):
            base = random.randrange(0, size // page - 16) * page
            if mode == 'contiguous':
                for k in range(16):
                    os.pwrite(fd, data, base + k * page)
            elif mode == 'one write':
                os.pwrite(fd, data * 16, base)
            else:
                for _ in range(16):
                    os.pwrite(fd, data, random.randrange(0, size // page) * page)
            os.fdatasync(fd)
        return (time.perf_counter() - start) / rounds * 1e6

    for mode in ['contiguous', 'one write', 'scattered'] * 2:
        print(f'{mode}: {round_us(mode):.0f} µs')
finally:
    os.close(fd)
    os.remove(path)
