/*
 * worker_launcher.privileged._umount: umount2(2) and the mount flags of <sys/mount.h>, as a
 * plain extension module.
 *
 * Every other system call of the privileged layer goes through the cffi module _sys. A reap
 * (Storm's reap-oci-container, at every worker's end) needs only this one: loading cffi's
 * backend for it would cost the reap ~0.8 ms of CPU (issue 17). privileged/kernel.py wraps it
 * like the rest: it returns 0 or the errno, and kernel.umount2 raises the OSError naming the
 * target.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <sys/mount.h>

static PyObject *wl_umount2(PyObject *module, PyObject *args)
{
    const char *target;
    int flags;
    int code = 0;
    (void)module;
    if (!PyArg_ParseTuple(args, "yi:umount2", &target, &flags))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    if (umount2(target, flags) != 0)
        code = errno;
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(code);
}

static PyMethodDef methods[] = {
    { "umount2", wl_umount2, METH_VARARGS,
      "umount2(target: bytes, flags: int) -> 0, or the errno of the failure" },
    { NULL, NULL, 0, NULL },
};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT, "_umount", "umount2(2) and the mount flags, without cffi", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__umount(void)
{
    PyObject *module = PyModule_Create(&definition);
    if (module == NULL)
        return NULL;
    if (PyModule_AddIntMacro(module, MS_RDONLY) || PyModule_AddIntMacro(module, MS_NOSUID)
        || PyModule_AddIntMacro(module, MS_NODEV) || PyModule_AddIntMacro(module, MS_NOEXEC)
        || PyModule_AddIntMacro(module, MS_BIND) || PyModule_AddIntMacro(module, MS_REC)
        || PyModule_AddIntMacro(module, MS_PRIVATE) || PyModule_AddIntMacro(module, MNT_DETACH)
        || PyModule_AddIntMacro(module, UMOUNT_NOFOLLOW)) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
