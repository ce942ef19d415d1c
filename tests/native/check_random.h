// The native checks' inputs: xorshift64, the same sequence on every run, uniform in [-1, 1).
#include <stdint.h>

static uint64_t check_random_state = 88172645463325252ull;
static double uniform() {
    check_random_state ^= check_random_state << 13;
    check_random_state ^= check_random_state >> 7;
    check_random_state ^= check_random_state << 17;
    return (double)(check_random_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}
