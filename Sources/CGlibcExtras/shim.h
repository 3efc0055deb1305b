/* glibc headers that Swift's Glibc module does not include. */
#include <malloc.h>
#include <sched.h>

/* The calling thread's scheduling policy, normal or batch (threads it starts inherit it).
   SCHED_BATCH is declared only under _GNU_SOURCE, which Swift's Glibc module lacks; the
   value is Linux's ABI. 0, or -1 with errno set. */
static inline int telltale_sched_policy(int batch) {
    struct sched_param param = {0};
    return sched_setscheduler(0, batch ? 3 /* SCHED_BATCH */ : SCHED_OTHER, &param);
}
