// The child JVM the kill test SIGKILLs: creates users on a store file and
// prints each id once its 201 is back (an acknowledged user).
package co.spkey.store

object CreateLoop {
    @JvmStatic
    fun main(args: Array<String>) {
        val (path, first) = args
        SpkeyStore(path).use { store ->
            var n = first.toInt()
            while (true) {
                val id = userId(n)
                val answer = store.createUser(id, body(id, "loop$n@example.com"))
                check(answer.status == 201) { answer.body }
                println(id)
                System.out.flush()
                n++
            }
        }
    }
}
