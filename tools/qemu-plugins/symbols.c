/*
 * Instructions retired per function of the guest program: a QEMU TCG plugin that
 * scripts/insn-profile loads into qemu-user to say where a frame's instructions go (which
 * tract kernels, which operators' loops, which of lookout's stages).
 *
 * Every translated block is charged to the symbol of its first instruction
 * (qemu_plugin_insn_symbol: the ELF symbol table qemu read from the program, so the program
 * must not be stripped). qemu finds a symbol only by its size, and assembly routines (tract's
 * matrix kernels) have none, nor do shared libraries' functions: such blocks are charged to
 * "? 0x<address of the block>", which scripts/insn-profile resolves against the program's
 * symbol table (nm) afterwards. Counts are added atomically, so programs with several
 * threads are counted exactly, as tests/plugin/bb.c does under its lock.
 *
 * At exit, one line per symbol with instructions, most first:
 *     <instructions>\t<symbol>
 * then "total\t<instructions>", through qemu_plugin_outs (qemu's -d plugin -D FILE).
 *
 * Built against the qemu-plugin.h of the installed qemu-user (scripts/insn-count fetches it).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glib.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

/* One symbol (or one unnamed region) and the instructions charged to it. */
typedef struct {
    char *name;
    uint64_t insns;
} Bucket;

/* One translated block: where its instructions go, and how many it has. */
typedef struct {
    Bucket *bucket;
    uint64_t n_insns;
} Block;

static GHashTable *buckets; /* name -> Bucket*, under lock */
static GMutex lock;

static Bucket *bucket_for(const char *name)
{
    Bucket *b;
    g_mutex_lock(&lock);
    b = g_hash_table_lookup(buckets, name);
    if (!b) {
        b = g_new0(Bucket, 1);
        b->name = g_strdup(name);
        g_hash_table_insert(buckets, b->name, b);
    }
    g_mutex_unlock(&lock);
    return b;
}

static void block_exec(unsigned int cpu_index, void *udata)
{
    Block *block = udata;
    __atomic_fetch_add(&block->bucket->insns, block->n_insns, __ATOMIC_RELAXED);
}

static void block_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    struct qemu_plugin_insn *first = qemu_plugin_tb_get_insn(tb, 0);
    const char *symbol = qemu_plugin_insn_symbol(first);
    char region[64];
    Block *block = g_new0(Block, 1);

    if (!symbol || !*symbol) {
        snprintf(region, sizeof region, "? 0x%" PRIx64, qemu_plugin_insn_vaddr(first));
        symbol = region;
    }
    /* A block is translated again when its code is flushed; each copy is its own Block. */
    block->bucket = bucket_for(symbol);
    block->n_insns = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, block_exec, QEMU_PLUGIN_CB_NO_REGS, block);
}

static gint most_first(gconstpointer a, gconstpointer b)
{
    const Bucket *x = *(Bucket *const *)a, *y = *(Bucket *const *)b;
    return x->insns < y->insns ? 1 : x->insns > y->insns ? -1 : strcmp(x->name, y->name);
}

static void plugin_exit(qemu_plugin_id_t id, void *p)
{
    GPtrArray *all = g_ptr_array_new();
    GHashTableIter it;
    gpointer key, value;
    uint64_t total = 0;
    GString *report = g_string_new("");
    guint i;

    g_hash_table_iter_init(&it, buckets);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        g_ptr_array_add(all, value);
    }
    g_ptr_array_sort(all, most_first);
    for (i = 0; i < all->len; i++) {
        Bucket *b = g_ptr_array_index(all, i);
        if (b->insns) {
            g_string_append_printf(report, "%" PRIu64 "\t%s\n", b->insns, b->name);
            total += b->insns;
        }
    }
    g_string_append_printf(report, "total\t%" PRIu64 "\n", total);
    qemu_plugin_outs(report->str);
    g_string_free(report, TRUE);
    g_ptr_array_free(all, TRUE);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    if (argc > 0) {
        fprintf(stderr, "symbols plugin: takes no options, got '%s'\n", argv[0]);
        return -1;
    }
    buckets = g_hash_table_new(g_str_hash, g_str_equal);
    g_mutex_init(&lock);
    qemu_plugin_register_vcpu_tb_trans_cb(id, block_trans);
    qemu_plugin_register_atexit_cb(id, plugin_exit, NULL);
    return 0;
}
